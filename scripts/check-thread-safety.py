#!/usr/bin/env python3
"""Checks engine/, server/, cluster/ and clients/cpp/luxdb/ with clang's -Wthread-safety (the
annotations in engine/mutex.h).

Usage: check-thread-safety.py COMPILE_COMMANDS_JSON SOURCE_DIR [CLANGXX]

Every engine/*.cc, server/*.cc, cluster/*.cc and clients/cpp/luxdb/*.cc that the build
compiles (taken from CMake's compile_commands.json, so new files are checked without listing
them here) is compiled with clang++ -fsyntax-only
-Wthread-safety -Werror and the include paths and defines of the real build. Then
tests/thread_safety/*.cc, each touching a guarded member without its lock, is compiled the
same way and must FAIL with a thread-safety diagnostic: so a setup where the flags or the
annotations do not reach clang cannot pass silently. Also fails if an engine/ or cluster/ file
other than engine/mutex.h declares a lock of a standard type (std::mutex, std::shared_mutex,
std::condition_variable, ...), which clang cannot check. Exits non-zero on any failure.
"""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

THREAD_SAFETY_FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Werror"]
# GCC-only options that clang rejects or warns about (none today; keep the list here).
GCC_ONLY_PREFIXES = ("-fno-sanitize=nonnull-attribute",)


def arguments_of(entry):
    if "arguments" in entry:
        return list(entry["arguments"])
    return shlex.split(entry["command"])


def clang_command(clangxx, entry, source):
    """The entry's compile command with clang++, for `source`, syntax only."""
    args = arguments_of(entry)
    out = [clangxx]
    skip = False
    for arg in args[1:]:  # args[0] is the compiler (a launcher such as ccache is not listed)
        if skip:
            skip = False
            continue
        if arg in ("-o", "-c"):
            skip = True  # drops "-o X" and "-c FILE"; the file is appended below
            continue
        if arg.startswith(GCC_ONLY_PREFIXES) or arg == entry["file"]:
            continue
        out.append(arg)
    return out + THREAD_SAFETY_FLAGS + ["-x", "c++", source]


# A member or variable declared with a standard lock type, e.g. "mutable std::mutex mu_;" or
# "std::shared_mutex* lock = nullptr;" (uses such as std::lock_guard<std::mutex> on hnswlib's
# own members are not declarations and do not match).
UNANNOTATED_LOCK = re.compile(
    r"^\s*(?:mutable\s+|static\s+|const\s+)*std::(?:recursive_|timed_|shared_|recursive_timed_)?"
    r"(?:mutex|condition_variable(?:_any)?|shared_timed_mutex)\b\s*[*&]?\s*(?:const\s+)?\w+\s*[;={(]")


def unannotated_locks(source_dir):
    """Lines of engine/ and cluster/ (mutex.h aside) that declare a lock clang's analysis cannot
    see."""
    found = []
    for path in sorted(p for d in ("engine", "cluster") for ext in ("*.h", "*.cc")
                       for p in glob.glob(os.path.join(source_dir, d, ext))):
        if os.path.basename(path) == "mutex.h":
            continue
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if UNANNOTATED_LOCK.search(line):
                    found.append(f"{os.path.relpath(path, source_dir)}:{number}: {line.strip()}")
    return found


def run(command, cwd):
    return subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    commands_path, source_dir = sys.argv[1], os.path.realpath(sys.argv[2])
    clangxx = sys.argv[3] if len(sys.argv) > 3 else "clang++"
    if shutil.which(clangxx) is None:
        print(f"{clangxx} not found: scripts/install-deps.sh installs it (Debian package clang)")
        return 1
    with open(commands_path) as f:
        entries = json.load(f)
    # engine/, server/ (the QueryStream reactors, the metrics and the request log lock
    # engine::Mutex), cluster/ (the etcd client's streams, lease keepers and watchers) and the
    # C++ client library (its QueryStream's write lock is one too).
    checked_dirs = tuple(os.path.join(source_dir, *parts) + os.sep
                         for parts in (("engine",), ("server",), ("cluster",),
                                       ("clients", "cpp", "luxdb")))
    engine = sorted((e for e in entries
                     if os.path.realpath(e["file"]).startswith(checked_dirs)
                     and e["file"].endswith(".cc")),
                    key=lambda e: e["file"])
    if not engine:
        print(f"no engine/*.cc in {commands_path}: is it the compile database of {source_dir}?")
        return 1
    failed = []
    for line in unannotated_locks(source_dir):
        failed.append(line.split(":")[0])
        print(f"FAIL {line}\n     declare it through engine/mutex.h (Mutex, RwLock, CondVar) so "
              "clang checks what it guards")
    for entry in engine:
        source = os.path.realpath(entry["file"])
        result = run(clang_command(clangxx, entry, source), entry["directory"])
        name = os.path.relpath(source, source_dir)
        if result.returncode != 0:
            failed.append(name)
            print(f"FAIL {name}\n{result.stdout}")
        else:
            print(f"ok   {name}")

    # The check must be able to fail: each deliberate violation must be rejected by clang, for
    # a thread-safety reason (compiled with the flags of the first engine file).
    violations_dir = os.path.join(source_dir, "tests", "thread_safety")
    violations = sorted(f for f in os.listdir(violations_dir) if f.endswith(".cc"))
    if not violations:
        print(f"no deliberate violations in {violations_dir}")
        return 1
    for violation in violations:
        path = os.path.join(violations_dir, violation)
        result = run(clang_command(clangxx, engine[0], path), engine[0]["directory"])
        name = os.path.relpath(path, source_dir)
        if result.returncode == 0 or "-Wthread-safety" not in result.stdout:
            failed.append(name)
            print(f"FAIL {name}: expected clang to reject it with a -Wthread-safety error, got "
                  f"exit status {result.returncode}:\n{result.stdout}")
        else:
            print(f"ok   {name} (rejected, as it must be)")
    if failed:
        print(f"\n{len(failed)} failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

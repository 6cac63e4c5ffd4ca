"""The `luxdb` command-line tool against a real luxdb-server, run as a user would run it.

Environment (CTest's python_tests sets it): LUXDB_CLI_BIN, the built `luxdb` binary; the
C++ README example `luxdb-cpp-quickstart` is built beside it.
"""

import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import time

import numpy as np
import pytest

from luxdb_testing import TEST_SECRET, LuxServer, free_port, server_environment

MISSING_ID = 2**64 - 1


def cli_binary():
    binary = os.environ.get("LUXDB_CLI_BIN")
    if not binary:
        pytest.fail("LUXDB_CLI_BIN is not set: run through CTest (ctest -R python_tests)",
                    pytrace=False)
    return binary


def cli_environment():
    return {**server_environment(), "LUXDB_SECRET": TEST_SECRET}


def luxdb(server, *args, check=True, env=None):
    """Runs `luxdb --port P ARGS` with stdout and stderr piped; returns the CompletedProcess."""
    result = subprocess.run([cli_binary(), "--port", str(server.port), *map(str, args)],
                            capture_output=True, text=True, timeout=60,
                            env=env or cli_environment())
    if check:
        assert result.returncode == 0, f"luxdb {' '.join(map(str, args))}: {result.stderr}"
    return result


def vectors(n, dim, seed=1):
    return np.random.default_rng(seed).random((n, dim), dtype=np.float32)


def parse_table(text):
    """The query table -> {query row: [(id or None, distance or None), ...]} in rank order."""
    lines = text.splitlines()
    assert lines[0].split() == ["query", "rank", "id", "distance"]
    rows = {}
    for line in lines[1:]:
        query, rank, ident, distance = line.split()
        hits = rows.setdefault(int(query), [])
        assert int(rank) == len(hits) + 1
        hits.append((None if ident == "-" else int(ident),
                     None if distance == "-" else float(distance)))
    return rows


@pytest.fixture
def data(tmp_path):
    """5,000 x 16 float32 vectors saved with numpy as data.npy."""
    array = vectors(5000, 16)
    path = tmp_path / "data.npy"
    np.save(path, array)
    return path, array


def test_every_command_on_an_npy_file(luxdb_server, data, tmp_path):
    path, array = data
    created = luxdb(luxdb_server, "create", "docs", "--space", "l2", "--dim", "16")
    assert created.stdout == "created index 'docs' (l2, dim 16)\n"
    initialised = luxdb(luxdb_server, "init", "docs", "--max-elements", "6000", "--m", "12",
                        "--ef-construction", "100")
    assert "max_elements 6000, m 12, ef_construction 100" in initialised.stdout

    added = luxdb(luxdb_server, "add", "docs", path)
    assert re.fullmatch(r"added 5,000 vectors from '.*data.npy' to index 'docs' \(ids 0-4999\) "
                        r"in [0-9.]+ s: [0-9,]+ vectors/s\n", added.stderr), added.stderr
    assert added.stdout == ""

    # Every row is its own nearest neighbour, at distance 0, in the table and in JSON.
    queries = tmp_path / "queries.npy"
    np.save(queries, array[:300])
    table = parse_table(luxdb(luxdb_server, "query", "docs", queries, "-k", "3",
                              "--ef", "200").stdout)
    assert sorted(table) == list(range(300))
    for row, hits in table.items():
        assert len(hits) == 3
        assert hits[0] == (row, 0.0)
        assert hits[1][1] <= hits[2][1]
    answers = json.loads(luxdb(luxdb_server, "query", "docs", queries, "-k", "2", "--ef", "200",
                               "--json").stdout)
    assert len(answers) == 300
    for row, answer in enumerate(answers):
        assert answer["ids"][0] == row
        assert answer["distances"][0] == 0
        assert len(answer["ids"]) == len(answer["distances"]) == 2
    # Distances are the squared L2 distances of the vectors.
    second = answers[7]["ids"][1]
    expected = float(np.sum((array[7] - array[second]) ** 2))
    assert answers[7]["distances"][1] == pytest.approx(expected, rel=1e-5)

    # get: the stored vectors, exactly, in the order asked.
    got = json.loads(luxdb(luxdb_server, "get", "docs", "4999,0,10-12", "--json").stdout)
    assert [item["id"] for item in got] == [4999, 0, 10, 11, 12]
    np.testing.assert_array_equal(np.array([item["vector"] for item in got], dtype=np.float32),
                                  array[[4999, 0, 10, 11, 12]])
    text = luxdb(luxdb_server, "get", "docs", "3").stdout
    ident, values = text.split(":")
    assert ident == "3"
    np.testing.assert_array_equal(np.array(values.split(), dtype=np.float32), array[3])

    ids = luxdb(luxdb_server, "ids", "docs").stdout.split()
    assert [int(i) for i in ids] == list(range(5000))

    deleted = luxdb(luxdb_server, "delete", "docs", "1,2,100-109")
    assert deleted.stdout == "deleted 12 items from 'docs'\n"
    again = luxdb(luxdb_server, "delete", "docs", "1,3")
    assert again.stdout == "deleted 1 item from 'docs' (1 already deleted)\n"
    assert json.loads(luxdb(luxdb_server, "ids", "docs", "--json").stdout)[:5] == [0, 4, 5, 6, 7]
    gone = luxdb(luxdb_server, "get", "docs", "2", check=False)
    assert gone.returncode == 1
    assert gone.stderr == "luxdb: index 'docs' has no item with id 2 (it was deleted)\n"

    resized = luxdb(luxdb_server, "resize", "docs", "20000")
    assert resized.stdout == "resized index 'docs' to max_elements 20000\n"
    luxdb(luxdb_server, "set-ef", "docs", "64")

    info = json.loads(luxdb(luxdb_server, "info", "docs", "--json").stdout)
    memory = info.pop("memory_bytes")
    assert memory > 0
    assert info == {"name": "docs", "space": "l2", "dim": 16, "initialized": True,
                    "element_count": 4987, "deleted_count": 13, "tombstones": 13,
                    "max_elements": 20000, "m": 12, "ef_construction": 100, "ef": 64,
                    "compacting": False}
    info_text = luxdb(luxdb_server, "info", "docs").stdout
    assert "items:           4987\n" in info_text
    assert "tombstones:      13 (luxdb compact frees them)\n" in info_text
    assert "max_elements:    20000\n" in info_text
    assert f"memory:          {memory / 2**20:.1f} MiB ({memory} bytes)\n" in info_text
    assert "compacting:      no\n" in info_text

    luxdb(luxdb_server, "create", "empty", "--space", "cosine", "--dim", "3")
    listed = luxdb(luxdb_server, "list").stdout.splitlines()
    assert listed[0].split() == ["name", "space", "dim", "items", "tombstones", "max_elements",
                                 "m", "ef_c", "ef"]
    assert listed[1].split() == ["docs", "l2", "16", "4987", "13", "20000", "12", "100", "64"]
    assert listed[2].split() == ["empty", "cosine", "3", "-", "-", "-", "-", "-", "-"]
    assert [i["name"] for i in json.loads(luxdb(luxdb_server, "list", "--json").stdout)] == [
        "docs", "empty"]

    compacted = luxdb(luxdb_server, "compact", "docs")
    assert re.fullmatch(r"compacted index 'docs': removed 13 tombstones, 4,?987 live items, "
                        r"in [0-9.]+ s\n", compacted.stdout), compacted.stdout
    info_text = luxdb(luxdb_server, "info", "docs").stdout
    assert "tombstones:      0\n" in info_text
    assert "items:           4987\n" in info_text
    assert [int(i) for i in luxdb(luxdb_server, "ids", "docs").stdout.split()][:3] == [0, 4, 5]
    uninitialised = luxdb(luxdb_server, "compact", "empty", check=False)
    assert uninitialised.returncode == 1
    assert "index 'empty' is not initialised" in uninitialised.stderr

    assert luxdb(luxdb_server, "drop", "docs").stdout == "dropped index 'docs'\n"
    missing = luxdb(luxdb_server, "info", "docs", check=False)
    assert missing.returncode == 1
    assert missing.stderr == "luxdb: index 'docs' does not exist\n"
    assert [i["name"] for i in json.loads(luxdb(luxdb_server, "list", "--json").stdout)] == [
        "empty"]


def test_fvecs_and_csv_files_and_ids_from(luxdb_server, tmp_path):
    luxdb(luxdb_server, "create", "mixed", "--space", "ip", "--dim", "8")
    luxdb(luxdb_server, "init", "mixed", "--max-elements", "100")
    fvecs_rows = vectors(20, 8, seed=2)
    fvecs = tmp_path / "rows.fvecs"
    with open(fvecs, "wb") as f:
        for row in fvecs_rows:
            f.write(struct.pack("<i", 8))
            f.write(row.astype("<f4").tobytes())
    csv_rows = vectors(10, 8, seed=3)
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, csv_rows, delimiter=",", fmt="%.9g")

    assert "added 20 vectors" in luxdb(luxdb_server, "add", "mixed", fvecs).stderr
    added = luxdb(luxdb_server, "add", "mixed", csv, "--ids-from", "1000", "--batch", "3")
    assert "added 10 vectors from" in added.stderr
    assert "(ids 1000-1009)" in added.stderr

    ids = [int(i) for i in luxdb(luxdb_server, "ids", "mixed").stdout.split()]
    assert ids == list(range(20)) + list(range(1000, 1010))
    got = json.loads(luxdb(luxdb_server, "get", "mixed", "0-19,1000-1009", "--json").stdout)
    np.testing.assert_array_equal(np.array([g["vector"] for g in got], dtype=np.float32),
                                  np.concatenate([fvecs_rows, csv_rows]))
    # A float64 .npy file is accepted and converted.
    doubles = tmp_path / "doubles.npy"
    np.save(doubles, csv_rows.astype(np.float64))
    assert "added 10 vectors" in luxdb(luxdb_server, "add", "mixed", doubles,
                                       "--ids-from", "2000").stderr
    got = json.loads(luxdb(luxdb_server, "get", "mixed", "2000-2009", "--json").stdout)
    np.testing.assert_array_equal(np.array([g["vector"] for g in got], dtype=np.float32),
                                  csv_rows)
    # Queries read the same formats.
    answers = json.loads(luxdb(luxdb_server, "query", "mixed", csv, "-k", "1", "--json").stdout)
    assert len(answers) == 10


def test_padding_slots_are_shown_honestly(luxdb_server, tmp_path):
    luxdb(luxdb_server, "create", "tiny", "--space", "l2", "--dim", "2")
    luxdb(luxdb_server, "init", "tiny", "--max-elements", "10")
    points = tmp_path / "points.csv"
    points.write_text("0,0\n3,4\n")
    luxdb(luxdb_server, "add", "tiny", points)
    query = tmp_path / "query.csv"
    query.write_text("0,0\n")
    answer = json.loads(luxdb(luxdb_server, "query", "tiny", query, "-k", "4", "--json").stdout)
    assert answer == [{"ids": [0, 1, None, None], "distances": [0, 25, None, None]}]
    table = parse_table(luxdb(luxdb_server, "query", "tiny", query, "-k", "4").stdout)
    assert table == {0: [(0, 0.0), (1, 25.0), (None, None), (None, None)]}
    assert str(MISSING_ID) not in luxdb(luxdb_server, "query", "tiny", query, "-k", "4").stdout


def test_malformed_files_are_refused_before_anything_is_sent(luxdb_server, tmp_path):
    luxdb(luxdb_server, "create", "docs", "--space", "l2", "--dim", "4")
    luxdb(luxdb_server, "init", "docs", "--max-elements", "100")
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((3, 4), dtype=np.int64))
    result = luxdb(luxdb_server, "add", "docs", ints, check=False)
    assert result.returncode == 1
    assert "dtype int64 ('<i8')" in result.stderr
    assert result.stderr.startswith("luxdb: ")

    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(4, dtype=np.float32))
    result = luxdb(luxdb_server, "add", "docs", flat, check=False)
    assert result.returncode == 1
    assert "shape (4,)" in result.stderr

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3,4\n5,6,7,8\n9,10,11\n")
    result = luxdb(luxdb_server, "add", "docs", ragged, check=False)
    assert result.returncode == 1
    assert "line 3 has 3 values, line 1 has 4" in result.stderr

    wrong_dim = tmp_path / "wide.npy"
    np.save(wrong_dim, np.zeros((2, 5), dtype=np.float32))
    result = luxdb(luxdb_server, "query", "docs", wrong_dim, "-k", "1", check=False)
    assert result.returncode == 1
    assert "holds vectors of dimension 5; index 'docs' has dimension 4" in result.stderr
    assert result.stdout == ""
    assert luxdb(luxdb_server, "ids", "docs").stdout == ""


def test_errors_and_exit_codes(luxdb_server, tmp_path):
    usage = luxdb(luxdb_server, "create", "x", "--space", "l3", "--dim", "2", check=False)
    assert (usage.returncode, usage.stderr) == (
        2, "luxdb: --space must be l2, ip or cosine, got 'l3'\n")
    for args, message in [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["query", "docs", "f.npy"], "'query' needs -k"),
        (["get", "docs", "5-1"], "range '5-1' in IDS goes down"),
        (["list", "--dim", "3"], "--dim is not an option of 'list'"),
        (["info"], "'info' takes NAME"),
    ]:
        result = luxdb(luxdb_server, *args, check=False)
        assert result.returncode == 2, args
        assert result.stderr.startswith("luxdb: ") and message in result.stderr, result.stderr

    server_error = luxdb(luxdb_server, "init", "nope", "--max-elements", "5", check=False)
    assert (server_error.returncode, server_error.stderr) == (
        1, "luxdb: index 'nope' does not exist\n")

    # A refused batch names its rows and what was added before it.
    luxdb(luxdb_server, "create", "small", "--space", "l2", "--dim", "4")
    rows = tmp_path / "rows.npy"
    np.save(rows, vectors(30, 4))
    uninitialised = luxdb(luxdb_server, "add", "small", rows, check=False)
    assert (uninitialised.returncode, uninitialised.stderr) == (
        1, "luxdb: index 'small' is not initialised: run luxdb init small --max-elements N\n")
    luxdb(luxdb_server, "init", "small", "--max-elements", "25")
    full = luxdb(luxdb_server, "add", "small", rows, "--batch", "10", check=False)
    assert full.returncode == 1
    assert full.stderr.startswith("luxdb: rows 20-29 of '")
    assert "index 'small' is full" in full.stderr
    assert full.stderr.endswith("(rows 0-19 were added)\n")
    assert luxdb(luxdb_server, "ids", "small").stdout.split() == [str(i) for i in range(20)]

    wrong = luxdb(luxdb_server, "--secret", "wrong", "list", check=False)
    assert wrong.returncode == 1
    assert "refused the secret" in wrong.stderr

    no_secret = {k: v for k, v in cli_environment().items() if k != "LUXDB_SECRET"}
    missing = luxdb(luxdb_server, "list", check=False, env=no_secret)
    assert missing.returncode == 2
    assert "no secret" in missing.stderr

    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    assert luxdb(luxdb_server, "--secret-file", secret_file, "list", env=no_secret).returncode == 0

    helped = subprocess.run([cli_binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0
    assert "query NAME FILE -k K" in helped.stdout
    assert "Exit status" in helped.stdout


def repository_version():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "VERSION")) as f:
        return f.read().strip()


def test_version_address_secret_file_and_limits_follow_the_shared_conventions(
        luxdb_server, luxdb_server_bin, tmp_path):
    version = repository_version()
    for binary, name in [(cli_binary(), "luxdb"), (luxdb_server_bin, "luxdb-server")]:
        shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        assert (shown.returncode, shown.stdout) == (0, f"{name} {version}\n")

    # The address from LUXDB_ADDRESS, or LUXDB_HOST and LUXDB_PORT, as every LuxDB tool reads it.
    base = {k: v for k, v in cli_environment().items()
            if k not in ("LUXDB_ADDRESS", "LUXDB_HOST", "LUXDB_PORT")}
    for extra in [{"LUXDB_ADDRESS": f"127.0.0.1:{luxdb_server.port}"},
                  {"LUXDB_HOST": "127.0.0.1", "LUXDB_PORT": str(luxdb_server.port)}]:
        listed = subprocess.run([cli_binary(), "list"], capture_output=True, text=True,
                                timeout=60, env={**base, **extra})
        assert listed.returncode == 0, (extra, listed.stderr)
    both = subprocess.run([cli_binary(), "list"], capture_output=True, text=True, timeout=60,
                          env={**base, "LUXDB_ADDRESS": "127.0.0.1:1", "LUXDB_PORT": "2"})
    assert both.returncode == 2 and "contradict" in both.stderr, both.stderr

    # The secret from LUXDB_SECRET_FILE; an unreadable secret file is a file error: exit 1.
    no_secret = {k: v for k, v in base.items() if k != "LUXDB_SECRET"}
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    via_env = luxdb(luxdb_server, "list", check=False,
                    env={**no_secret, "LUXDB_SECRET_FILE": str(secret_file)})
    assert via_env.returncode == 0, via_env.stderr
    for args, env in [(["--secret-file", tmp_path / "missing", "list"], no_secret),
                      (["list"], {**no_secret, "LUXDB_SECRET_FILE": str(tmp_path / "missing")})]:
        unreadable = luxdb(luxdb_server, *args, check=False, env=env)
        assert unreadable.returncode == 1, unreadable.stderr
        assert str(tmp_path / "missing") in unreadable.stderr

    # The CLI refuses what the server would, before reading any file: exit 2 naming the limit.
    too_many = luxdb(luxdb_server, "query", "docs", tmp_path / "q.npy", "-k", "20001", check=False)
    assert too_many.returncode == 2
    assert "-k needs a whole number from 1 to 10000, got '20001'" in too_many.stderr


def test_ids_pages_through_more_ids_than_one_reply_holds(luxdb_server_bin, tmp_path):
    """Behind a 1 MiB message cap a reply holds 104,851 ids: `luxdb ids` lists 210,000 in
    three pages; --limit and --start-after fetch one page and say where the next starts."""
    server = LuxServer(luxdb_server_bin, tmp_path / "data", log_dir=tmp_path,
                       extra_args=["--max-message-mb", "1"])
    try:
        server.start()
        count, fit = 210_000, 104_851
        rows = tmp_path / "line.npy"
        np.save(rows, np.arange(count, dtype=np.float32).reshape(-1, 1))
        luxdb(server, "create", "many", "--space", "l2", "--dim", "1")
        luxdb(server, "init", "many", "--max-elements", count, "--m", "4",
              "--ef-construction", "8")
        luxdb(server, "add", "many", rows, "--batch", "50000")
        luxdb(server, "delete", "many", "0,7,209999")
        live = [i for i in range(count) if i not in (0, 7, 209_999)]

        listed = luxdb(server, "ids", "many")
        assert [int(i) for i in listed.stdout.split()] == live and listed.stderr == ""
        assert json.loads(luxdb(server, "ids", "many", "--json").stdout) == live

        page = luxdb(server, "ids", "many", "--limit", "3", "--start-after", fit)
        assert page.stdout.split() == [str(fit + 1), str(fit + 2), str(fit + 3)]
        assert page.stderr == f"luxdb: more ids follow: luxdb ids many --start-after {fit + 3}\n"
        first = luxdb(server, "ids", "many", "--limit", "0")
        assert [int(i) for i in first.stdout.split()] == live[:fit]
        assert f"--start-after {live[fit - 1]}\n" in first.stderr
        last = json.loads(luxdb(server, "ids", "many", "--start-after", "209990", "--json").stdout)
        assert last == {"ids": list(range(209_991, 209_999)), "next_start_after": None}
        middle = json.loads(luxdb(server, "ids", "many", "--start-after", "0", "--limit", "2",
                                  "--json").stdout)
        assert middle == {"ids": [1, 2], "next_start_after": 2}
        past = luxdb(server, "ids", "many", "--start-after", 2**64 - 1)
        assert (past.stdout, past.stderr) == ("", "")

        # The CLI knows the server's page limit: a usage error before anything is sent.
        refused = luxdb(server, "ids", "many", "--limit", "10000001", check=False)
        assert refused.returncode == 2 and refused.stdout == ""
        assert "--limit needs a whole number from 0 to 10000000, got '10000001'" in refused.stderr
        server.stop()
    finally:
        server.abandon()

    helped = subprocess.run([cli_binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert "ids NAME [--json] [--limit N] [--start-after ID]" in helped.stdout
    assert "(default 0: as many as the server sends in one reply" in helped.stdout
    assert "ID (default: from the smallest)" in helped.stdout


def run_with_stderr_on_a_terminal(args, env, timeout=60):
    """Runs `args` with stderr on a pseudo-terminal (120 columns); returns (code, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=slave, env=env)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, output.decode()


def test_progress_bar_only_on_a_terminal(luxdb_server, data):
    path, _ = data
    luxdb(luxdb_server, "create", "piped", "--space", "l2", "--dim", "16")
    luxdb(luxdb_server, "init", "piped", "--max-elements", "5000")
    piped = luxdb(luxdb_server, "add", "piped", path, "--batch", "500")
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert "ETA" not in piped.stderr and "%" not in piped.stderr
    assert len(piped.stderr.splitlines()) == 1
    assert piped.stderr.startswith("added 5,000 vectors")

    luxdb(luxdb_server, "create", "tty", "--space", "l2", "--dim", "16")
    luxdb(luxdb_server, "init", "tty", "--max-elements", "5000")
    code, terminal = run_with_stderr_on_a_terminal(
        [cli_binary(), "--port", str(luxdb_server.port), "add", "tty", str(path),
         "--batch", "500"],
        cli_environment())
    assert code == 0, terminal
    assert "\r[" in terminal and "\x1b[K" in terminal  # redrawn in place
    assert "ETA" in terminal
    assert re.search(r"100%  5,000/5,000 vectors  [0-9,]+ vectors/s  in 0:\d\d", terminal), terminal
    assert "added 5,000 vectors" in terminal
    info = json.loads(luxdb(luxdb_server, "info", "tty", "--json").stdout)
    assert info["element_count"] == 5000


def test_cpp_readme_example_runs(luxdb_server):
    example = os.path.join(os.path.dirname(cli_binary()), "luxdb-cpp-quickstart")
    if not os.access(example, os.X_OK):
        pytest.fail(f"{example} is not built (target luxdb-cpp-quickstart)", pytrace=False)
    # HOST PORT, then no arguments (the address from LUXDB_ADDRESS), which also shows that a
    # second run replaces the example's index.
    for args, extra in [(["127.0.0.1", str(luxdb_server.port)], {}),
                        ([], {"LUXDB_ADDRESS": f"127.0.0.1:{luxdb_server.port}"})]:
        result = subprocess.run([example, *args], capture_output=True, text=True, timeout=60,
                                env={**cli_environment(), **extra})
        assert result.returncode == 0, result.stderr
        assert "query 0: nearest id 1000 at distance 0" in result.stdout
        assert "query 1: nearest id 1001 at distance 0" in result.stdout
        assert "added 100 vectors; read back 2 of dimension 4; index: 100 items" in result.stdout


def health(port, *args, env=None):
    """Runs `luxdb --port P health ARGS` without a secret in the environment."""
    no_secret = {k: v for k, v in (env or cli_environment()).items() if k != "LUXDB_SECRET"}
    return subprocess.run([cli_binary(), "--port", str(port), "health", *map(str, args)],
                          capture_output=True, text=True, timeout=60, env=no_secret)


def test_health_reports_serving_without_a_secret(luxdb_server):
    whole = health(luxdb_server.port)
    assert (whole.returncode, whole.stdout, whole.stderr) == (0, "SERVING\n", "")
    service = health(luxdb_server.port, "--service", "luxdb.v1.LuxDB")
    assert (service.returncode, service.stdout, service.stderr) == (0, "SERVING\n", "")
    # A KDF setting the health check does not use cannot break it.
    broken_kdf = health(luxdb_server.port, env={**cli_environment(), "KDF_ITERATIONS": "many"})
    assert (broken_kdf.returncode, broken_kdf.stdout) == (0, "SERVING\n"), broken_kdf.stderr

    unknown = health(luxdb_server.port, "--service", "no.such.Service")
    assert unknown.returncode == 1
    assert unknown.stdout == "SERVICE_UNKNOWN\n"
    assert unknown.stderr == (f"luxdb: 127.0.0.1:{luxdb_server.port} reports no health status "
                              "for service 'no.such.Service' (SERVICE_UNKNOWN)\n")


def test_health_fails_naming_the_address_when_nothing_answers():
    port = free_port()  # nothing listens there
    refused = health(port)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith(f"luxdb: cannot reach 127.0.0.1:{port}: "), refused.stderr

    # A port that accepts connections but never answers: the deadline, named in the message.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_port = silent.getsockname()[1]
        started = time.monotonic()
        hung = health(silent_port, "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert (hung.returncode, hung.stdout, hung.stderr) == (
        1, "", f"luxdb: cannot reach 127.0.0.1:{silent_port}: no answer within 500 ms\n")
    assert elapsed < 10

    for args, message in [
        (["extra"], "'health' takes no arguments, got 1 argument"),
        (["--service"], "--service needs a value"),
        (["--timeout", "0"], "--timeout needs a positive number of seconds, got '0'"),
    ]:
        usage = health(port, *args)
        assert usage.returncode == 2, args
        assert usage.stderr.startswith("luxdb: ") and message in usage.stderr, usage.stderr
    other = subprocess.run([cli_binary(), "list", "--service", "x"], capture_output=True,
                           text=True, timeout=60, env=cli_environment())
    assert (other.returncode, other.stderr) == (
        2, "luxdb: --service is not an option of 'list'\n")


def test_health_over_mutual_tls(luxdb_tls_server, tls_files):
    tls = ["--tls-ca", tls_files["ca"], "--tls-cert", tls_files["client"],
           "--tls-key", tls_files["client_key"]]
    over_tls = health(luxdb_tls_server, *tls)
    assert (over_tls.returncode, over_tls.stdout, over_tls.stderr) == (0, "SERVING\n", "")
    plaintext = health(luxdb_tls_server)
    assert plaintext.returncode == 1
    assert plaintext.stdout == ""
    assert f"127.0.0.1:{luxdb_tls_server}" in plaintext.stderr


def test_backup_makes_a_copy_a_server_answers_from(luxdb_server, data, tmp_path,
                                                   luxdb_server_bin):
    """Issue 6: `luxdb backup DIR` while the server runs; a server started on DIR (the README's
    restore) answers like the original."""
    path, array = data
    luxdb(luxdb_server, "create", "docs", "--space", "l2", "--dim", 16)
    luxdb(luxdb_server, "init", "docs", "--max-elements", 10000)
    luxdb(luxdb_server, "add", "docs", path)
    queries = tmp_path / "queries.npy"
    np.save(queries, array[:20])
    before = luxdb(luxdb_server, "query", "docs", queries, "-k", 3).stdout

    target = tmp_path / "backups" / "nightly"
    target.parent.mkdir()
    result = luxdb(luxdb_server, "backup", target)
    assert f"backup written to {target} on the server" in result.stdout
    refused = luxdb(luxdb_server, "backup", target, check=False)
    assert refused.returncode == 1
    assert str(target) in refused.stderr and "exists" in refused.stderr
    relative = luxdb(luxdb_server, "backup", "nightly", check=False)
    assert relative.returncode == 1 and "--backup-dir" in relative.stderr

    copy = LuxServer(luxdb_server_bin, target, log_dir=tmp_path)
    try:
        copy.start()
        assert luxdb(copy, "query", "docs", queries, "-k", 3).stdout == before
        copy.stop()
    finally:
        copy.abandon()


def item_attributes(i):
    """The attributes row i gets in the attribute tests ({} for every 11th)."""
    if i % 11 == 0:
        return {}
    return {"tenant": i % 3, "tags": ["even" if i % 2 == 0 else "odd", f"t{i % 5}"],
            "price": i / 10 + 0.25, "new": i % 4 == 0}


def test_add_attributes_then_query_filter_returns_only_matching_items(luxdb_server, tmp_path):
    array = vectors(300, 8, seed=3)
    path = tmp_path / "items.npy"
    np.save(path, array)
    attributes = tmp_path / "items.jsonl"
    attributes.write_text("".join(json.dumps(item_attributes(i)) + "\n" for i in range(300)))
    luxdb(luxdb_server, "create", "docs", "--space", "l2", "--dim", "8")
    luxdb(luxdb_server, "init", "docs", "--max-elements", "300")
    # Batches of 64 rows: each batch's attributes must be its own rows'.
    added = luxdb(luxdb_server, "add", "docs", path, "--attributes", attributes, "--batch", "64")
    assert re.match(r"added 300 vectors from '.*items.npy' with attributes from '.*items.jsonl' "
                    r"to index 'docs' \(ids 0-299\)", added.stderr), added.stderr

    # get --with-attributes: keys ascending, one value as itself, lists as arrays.
    got = json.loads(luxdb(luxdb_server, "get", "docs", "0,7,298", "--json",
                           "--with-attributes").stdout)
    assert [item["id"] for item in got] == [0, 7, 298]
    for item in got:
        expected = item_attributes(item["id"])
        assert list(item["attributes"]) == sorted(expected)
        assert item["attributes"] == expected
    np.testing.assert_array_equal(np.array(got[1]["vector"], dtype=np.float32), array[7])
    table = luxdb(luxdb_server, "get", "docs", "7", "--with-attributes").stdout.splitlines()
    assert table[1] == ('  attributes: {"new": false, "price": 0.95, "tags": ["odd", "t2"], '
                        '"tenant": 1}')

    queries = tmp_path / "queries.npy"
    np.save(queries, array[:40])

    def query(query_filter):
        """{query row: [ids]} of a filtered query of the first 40 rows, k 20."""
        answers = json.loads(luxdb(luxdb_server, "query", "docs", queries, "-k", "20", "--ef",
                                   "300", "--json", "--filter", json.dumps(query_filter)).stdout)
        assert len(answers) == 40
        return {row: [i for i in answer["ids"] if i is not None]
                for row, answer in enumerate(answers)}

    def check(query_filter, predicate):
        matching = {i for i in range(300) if predicate(i)}
        assert matching, "a filter that matches nothing tests little"
        for row, ids in query(query_filter).items():
            assert set(ids) <= matching, (query_filter, row, set(ids) - matching)
            assert len(ids) == min(20, len(matching)), (query_filter, row)
            if row in matching:
                assert ids[0] == row, (query_filter, row)

    check({"must": [{"key": "tenant", "equals": 1}]}, lambda i: i % 11 and i % 3 == 1)
    check({"must": [{"key": "tags", "any_of": ["t1", "t3"]}],
           "must_not": [{"key": "new", "equals": True}]},
          lambda i: i % 11 and i % 5 in (1, 3) and i % 4 != 0)
    check({"must": [{"key": "price", "range": {"gte": 10, "lt": 20.25}}]},
          lambda i: i % 11 and 10 <= i / 10 + 0.25 < 20.25)
    check({"must_not": [{"key": "tenant", "exists": True}]}, lambda i: i % 11 == 0)
    check({"should": [{"key": "tags", "equals": "even"}, {"key": "tenant", "equals": 2}],
           "ids": list(range(0, 300, 3)) + [1, 5]},
          lambda i: (i % 3 == 0 or i in (1, 5)) and i % 11 and (i % 2 == 0 or i % 3 == 2))
    # An id list alone (the items need no attributes); [] restricts nothing.
    check({"ids": [0, 11, 22]}, lambda i: i in (0, 11, 22))
    check({"ids": []}, lambda i: True)


def test_bad_attributes_and_filters_are_refused_naming_them(luxdb_server, tmp_path):
    path = tmp_path / "items.npy"
    np.save(path, vectors(4, 8))
    luxdb(luxdb_server, "create", "docs", "--space", "l2", "--dim", "8")
    luxdb(luxdb_server, "init", "docs", "--max-elements", "10")

    def add(lines):
        attributes = tmp_path / "bad.jsonl"
        attributes.write_text("".join(line + "\n" for line in lines))
        return luxdb(luxdb_server, "add", "docs", path, "--attributes", attributes, check=False)

    refused = add(['{"tenant": 1}', '{}', '{"tenant": 2, "price": null}', '{}'])
    assert refused.returncode == 1
    assert re.fullmatch(r"luxdb: '.*bad.jsonl' line 3: key 'price': .*\n", refused.stderr), \
        refused.stderr
    refused = add(['{}', '["a"]', '{}', '{}'])
    assert refused.returncode == 1
    assert "bad.jsonl' line 2: not a JSON object" in refused.stderr
    refused = add(['{}', '{"tags": ["a", 1]}', '{}', '{}'])
    assert refused.returncode == 1
    assert "bad.jsonl' line 2: key 'tags': an array holds strings or whole numbers" \
        in refused.stderr
    refused = add(['{}', '{}', '{}'])
    assert refused.returncode == 1
    assert re.search(r"'.*bad.jsonl' has 3 lines of attributes and '.*items.npy' 4 rows",
                     refused.stderr), refused.stderr
    # Nothing was sent.
    assert json.loads(luxdb(luxdb_server, "info", "docs", "--json").stdout)["element_count"] == 0

    # A malformed --filter is a usage error (exit 2) naming the field or condition.
    for query_filter, message in [
            ('{"must": [{"key": "a", "equals": 1}], "mustnt": []}', "unknown field 'mustnt'"),
            ('{"must": [{"key": "a", "eq": 1}]}', "filter.must[0]: unknown field 'eq'"),
            ('{"should": [{"key": "p", "range": {}}]}', "filter.should[0] ('p'): range needs"),
            ('{"must": [', "malformed JSON")]:
        result = luxdb(luxdb_server, "query", "docs", path, "-k", "1", "--filter", query_filter,
                       check=False)
        assert result.returncode == 2, query_filter
        assert result.stderr.startswith("luxdb: --filter: ") and message in result.stderr, \
            result.stderr

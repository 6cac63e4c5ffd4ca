"""The build steps of the luxdb package that pyproject.toml cannot declare: its version comes
from the repository's VERSION file, and the package gets two generated parts, written into the
build only (never into the source tree):

    luxdb/_version.py        from _version.py.in (the CMake build makes the same file)
    luxdb/v1/luxdb_pb2*.py   the gRPC stubs of proto/luxdb/v1/luxdb.proto, generated with
                             protoc and grpc_python_plugin (Debian's protobuf-compiler and
                             protobuf-compiler-grpc), with .pyi type stubs for the messages

Both inputs live outside this directory (../../VERSION, ../../proto), so the package builds
from a checkout of the whole repository; pip builds a local directory in place.
"""

import atexit
import pathlib
import re
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
VERSION_FILE = REPOSITORY / "VERSION"
PROTO_ROOT = REPOSITORY / "proto"
PROTO = pathlib.PurePosixPath("luxdb/v1/luxdb.proto")  # relative to PROTO_ROOT
VERSION_TEMPLATE = HERE / "_version.py.in"
# The versions CMake's project(VERSION) accepts: numeric components only.
VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9]+){0,3}")


class BuildError(SystemExit):
    """Stops the build with one line naming what is missing and how to get it."""

    def __init__(self, message):
        super().__init__(f"luxdb: {message}")


def _outside_input(path, what):
    if not path.exists():
        raise BuildError(
            f"{what} {path} does not exist: build the package from a checkout of the LuxDB "
            f"repository (pip install ./clients/python from its top directory), not from a "
            f"copy of clients/python alone")
    return path


def read_version():
    """The repository's version, from VERSION (its first line)."""
    text = _outside_input(VERSION_FILE, "the version file").read_text(encoding="utf-8")
    version = text.splitlines()[0].strip() if text.strip() else ""
    if not VERSION_PATTERN.fullmatch(version):
        raise BuildError(f"{VERSION_FILE} holds {version!r}, not a version like 1.2.3")
    return version


def _tool(name, package):
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} is not on PATH; it generates the gRPC stubs from "
                         f"{PROTO_ROOT / PROTO}: install Debian's {package} "
                         f"(apt-get install {package})")
    return path


class BuildWithGeneratedParts(build_py):
    """build_py, then _version.py and the stubs, into the build directory."""

    def run(self):
        if getattr(self, "editable_mode", False):
            raise BuildError("an editable install (pip install -e) is not supported: the "
                             "package's stubs and version are generated at build time; "
                             "install it without -e, or use <build>/python of the CMake build")
        super().run()
        package = pathlib.Path(self.build_lib) / "luxdb"
        template = VERSION_TEMPLATE.read_text(encoding="utf-8")
        (package / "_version.py").write_text(
            template.replace("@PROJECT_VERSION@", read_version()), encoding="utf-8")
        self.generate_stubs(pathlib.Path(self.build_lib))

    @staticmethod
    def generate_stubs(out):
        _outside_input(PROTO_ROOT / PROTO, "the service definition")
        command = [_tool("protoc", "protobuf-compiler"), f"--proto_path={PROTO_ROOT}",
                   f"--python_out={out}", f"--pyi_out={out}", f"--grpc_out={out}",
                   "--plugin=protoc-gen-grpc="
                   + _tool("grpc_python_plugin", "protobuf-compiler-grpc"), str(PROTO)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"generating the stubs failed ({' '.join(command)}): "
                             f"{result.stderr.strip()}")


# setuptools' work files (build/, luxdb.egg-info) go to a fresh directory of each build rather
# than beside the source, where a module left over from an earlier build would be packaged.
WORK = tempfile.mkdtemp(prefix="luxdb-build-")
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
setup(version=read_version(), cmdclass={"build_py": BuildWithGeneratedParts},
      options={"build": {"build_base": WORK}, "egg_info": {"egg_base": WORK}})

"""`pip install ./clients/python` as the README has a user do it: into a fresh virtual
environment that sees Debian's grpcio, protobuf and numpy (--system-site-packages), offline
(--no-index), from a copy of the repository's sources. Then, from another directory and
without PYTHONPATH, a script in the original LuxDB client's README style runs against a real
server through both clients, and the package reports the repository's VERSION."""

import pathlib
import shutil
import subprocess
import sys

import pytest

from luxdb_testing import TEST_SECRET, server_environment

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 300
RUN_TIMEOUT_S = 120

# The original client's README, in short: connect, create, init, add, query, get_elements.
SNIPPET = '''
import asyncio
import sys

import numpy as np

import luxdb
import luxdb.v1.luxdb_pb2
from luxdb.client import connect
from luxdb.sync_client import connect as sync_connect

host, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dim = 16
num_elements = 100
data = np.float32(np.random.default_rng(3).random((num_elements, dim)))
ids = np.arange(num_elements)


async def main():
    async with connect(host, port, secret) as client:
        await client.create_index("index_name", "l2", dim)
        await client.init_index("index_name", max_elements=num_elements, ef_construction=200,
                                M=16)
        await client.add_items("index_name", data, ids)
        await client.set_ef("index_name", 50)
        labels, distances = await client.query_index("index_name", data, k=1)
        print("async found itself:", (labels[:, 0] == ids).mean())
        elements = await client.get_elements("index_name", [1, 3, 5])
        print("async get_elements:", np.array_equal(elements, data[[1, 3, 5]]))


asyncio.run(main())

with sync_connect(host, port, secret) as client:
    elements = client.get_elements("index_name", [1, 3, 5])
    print("sync get_elements:", np.array_equal(elements, data[[1, 3, 5]]))
    print("sync count:", client.count("index_name"))

print("version:", luxdb.__version__)
print("package:", luxdb.__file__)
print("stubs:", luxdb.v1.luxdb_pb2.DESCRIPTOR.package)
'''


def user_environment(**extra):
    """The environment of a user's shell: no PYTHONPATH (CTest's points at build/python)."""
    env = {k: v for k, v in server_environment().items()
           if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_CACHE_DIR="1",
               **extra)
    return env


def run(command, cwd, timeout, **extra_env):
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=user_environment(**extra_env))


def copy_sources(destination, *, with_version=True):
    """What the package builds from, laid out as in the repository: clients/python, proto/
    and VERSION."""
    shutil.copytree(REPOSITORY / "clients" / "python", destination / "clients" / "python",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build",
                                                  "*.egg-info"))
    shutil.copytree(REPOSITORY / "proto", destination / "proto")
    if with_version:
        shutil.copy(REPOSITORY / "VERSION", destination / "VERSION")
    return destination


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtual environment with luxdb installed from a copy of the sources; its bin/."""
    root = tmp_path_factory.mktemp("package")
    sources = copy_sources(root / "src")
    made = run([sys.executable, "-m", "venv", "--system-site-packages", root / "venv"],
               root, PIP_TIMEOUT_S)
    assert made.returncode == 0, made.stderr
    bin_dir = root / "venv" / "bin"
    installed = run([bin_dir / "pip", "install", "--no-build-isolation", "--no-index",
                     "./clients/python"], sources, PIP_TIMEOUT_S)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The build leaves nothing in the source tree (its work files go to a temporary
    # directory), so a later build cannot package leftovers.
    leftovers = sorted(p.name for p in (sources / "clients" / "python").iterdir()
                       if p.name in ("build", "luxdb.egg-info"))
    assert leftovers == []
    return bin_dir


def test_readme_snippet_runs_from_elsewhere_through_the_installed_package(venv, luxdb_server,
                                                                           tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPET)
    result = run([venv / "python", script, "127.0.0.1", luxdb_server.port, TEST_SECRET],
                 tmp_path, RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert float(lines["async found itself"]) >= 0.99
    assert lines["async get_elements"] == "True"
    assert lines["sync get_elements"] == "True"
    assert lines["sync count"] == "100"
    assert lines["version"] == (REPOSITORY / "VERSION").read_text().strip()
    package = pathlib.Path(lines["package"])
    assert package.is_relative_to(venv.parent), f"imported {package}, not the installed one"
    assert lines["stubs"] == "luxdb.v1"
    assert (package.parent / "py.typed").is_file()
    assert (package.parent / "client.pyi").is_file()
    assert not (package.parent / "_version.py.in").exists()


def test_build_without_the_repository_around_it_names_what_is_missing(venv, tmp_path):
    sources = copy_sources(tmp_path / "src", with_version=False)
    result = run([venv / "pip", "wheel", "--no-build-isolation", "--no-index", "--no-deps",
                  "-w", tmp_path / "wheels", "./clients/python"], sources, PIP_TIMEOUT_S)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"luxdb: the version file {sources / 'VERSION'} does not exist" in output, output


def test_build_without_protoc_names_the_debian_package(venv, tmp_path):
    sources = copy_sources(tmp_path / "src")
    result = run([venv / "pip", "wheel", "--no-build-isolation", "--no-index", "--no-deps",
                  "-w", tmp_path / "wheels", "./clients/python"], sources, PIP_TIMEOUT_S,
                 PATH=str(venv))  # the environment's own tools only: no protoc
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "luxdb: protoc is not on PATH" in output and "protobuf-compiler" in output, output

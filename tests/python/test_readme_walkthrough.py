"""The README's walk-through, examples/quickstart.py, run as a user would against a server."""

import pathlib
import subprocess
import sys

from luxdb_testing import TEST_SECRET, server_environment

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def run_quickstart(address):
    return subprocess.run(
        [sys.executable, str(QUICKSTART), address],
        capture_output=True, text=True, timeout=60,
        env={**server_environment(), "LUXDB_SECRET": TEST_SECRET},
    )


def test_quickstart_creates_adds_queries_and_reads_back(luxdb_server):
    result = run_quickstart(luxdb_server.address)
    assert result.returncode == 0, result.stderr
    assert "added 100 vectors" in result.stdout
    assert "nearest ids: [[1000," in result.stdout
    assert "read back 2 vectors; index: 100 items" in result.stdout
    # Running it again replaces its index rather than failing on the existing name.
    again = run_quickstart(luxdb_server.address)
    assert again.returncode == 0, again.stderr
    assert "index: 100 items" in again.stdout

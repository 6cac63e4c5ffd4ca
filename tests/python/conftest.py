"""Fixtures for the Python tests against the real luxdb-server binary (see luxdb_testing)."""

import pytest

from luxdb_testing import LuxServer, server_binary


@pytest.fixture(scope="session")
def luxdb_server_bin():
    """Path of luxdb-server from LUXDB_SERVER_BIN; fails clearly if it is unset."""
    return server_binary()


@pytest.fixture
def luxdb_server(luxdb_server_bin, tmp_path):
    """A LuxServer over a fresh data directory, started and serving; on teardown it gets
    SIGTERM and must exit 0 within 30 s."""
    server = LuxServer(luxdb_server_bin, tmp_path / "data", log_dir=tmp_path)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        server.abandon()


@pytest.fixture
def stub(luxdb_server):
    """A luxdb_pb2_grpc.LuxDBStub connected to a fresh server."""
    return luxdb_server.stub

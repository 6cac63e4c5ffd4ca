"""Fixtures for the Python tests against the real luxdb-server binary (see luxdb_testing)."""

import signal
import subprocess
import time

import grpc
import pytest

from luxdb_testing import (TEST_KDF_ITERATIONS, TEST_SECRET, LuxServer, free_port,
                           server_binary, server_environment)


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


@pytest.fixture
def client_environment(monkeypatch):
    """Gives luxdb clients created in the test the test servers' key derivation
    (KDF_ITERATIONS=1000, default salt) through the environment, as a user would."""
    monkeypatch.setenv("KDF_ITERATIONS", str(TEST_KDF_ITERATIONS))
    monkeypatch.delenv("LUXDB_SALT", raising=False)
    monkeypatch.delenv("LUXBD_SALT", raising=False)


@pytest.fixture
def client_args(luxdb_server, client_environment):
    """(host, port, secret) of a fresh server, for luxdb.client / luxdb.sync_client."""
    return "127.0.0.1", luxdb_server.port, TEST_SECRET


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """{name: path} of throw-away PEM files made with the openssl command: "ca" (and its key),
    "server"/"server_key" for 127.0.0.1 and localhost, "client"/"client_key" signed by ca."""
    d = tmp_path_factory.mktemp("tls")
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in [
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=LuxDB test CA"],
        ["req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
        ["req", "-new", *ec, "-keyout", "client.key", "-out", "client.csr",
         "-subj", "/CN=luxdb client"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext"],
    ]:
        result = subprocess.run(["openssl", *command], cwd=d, capture_output=True, text=True)
        assert result.returncode == 0, f"openssl {' '.join(command)}: {result.stderr}"
    return {"ca": d / "ca.pem", "server": d / "server.pem", "server_key": d / "server.key",
            "client": d / "client.pem", "client_key": d / "client.key"}


@pytest.fixture
def start_luxdb_server(luxdb_server_bin, tmp_path, client_environment):
    """start(*flags, **client_options) runs luxdb-server with extra flags on a fresh data
    directory and returns its port once a luxdb.sync_client.SyncClient with client_options
    connects; every server started is stopped with SIGTERM (and must exit 0) on teardown."""
    import luxdb.sync_client  # here, so that the other tests need only the stubs and luxdb.auth

    processes = []

    def start(*flags, **client_options):
        port = free_port()
        name = f"luxdb-server-{len(processes)}"
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [luxdb_server_bin, "--host", "127.0.0.1", "--port", str(port),
                 "--secret", TEST_SECRET, *flags, str(tmp_path / name)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=server_environment())
        processes.append(process)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
            try:
                with luxdb.sync_client.connect("127.0.0.1", port, TEST_SECRET, **client_options):
                    return port
            except luxdb.sync_client.LuxDBError as error:
                if error.code != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    try:
        yield start
        for process in processes:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def luxdb_tls_server(start_luxdb_server, tls_files):
    """The port of a luxdb-server speaking mutual TLS (server and client certificates from
    tls_files), serving a fresh data directory."""
    return start_luxdb_server(
        "--tls-cert", str(tls_files["server"]), "--tls-key", str(tls_files["server_key"]),
        "--tls-client-ca", str(tls_files["ca"]), tls_ca=tls_files["ca"],
        tls_cert=tls_files["client"], tls_key=tls_files["client_key"])

"""Helpers for the Python tests: run the real luxdb-server binary, talk to it, encode vectors.

Environment (CTest's python_tests sets both):
  LUXDB_SERVER_BIN  path of the built luxdb-server binary
  PYTHONPATH        holds the generated stubs, importable as luxdb.v1
"""

import os
import signal
import socket
import subprocess
import time

import grpc
import numpy as np
import pytest

try:
    from luxdb import auth
    from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc
except ImportError as error:  # pragma: no cover - a setup problem, not a test outcome
    raise ImportError(
        "cannot import the generated LuxDB stubs (luxdb.v1.luxdb_pb2): build the "
        "luxdb_python target and put <build>/python on PYTHONPATH "
        f"({error})"
    ) from error

# The server accepts 256 MiB messages by default; the client must allow as much.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
START_TIMEOUT_S = 60

# The secret test servers run with, and a fast key derivation for both sides (the default
# 2^18 PBKDF2 iterations cost ~0.2 s per process; the C++ auth tests cover them).
TEST_SECRET = "luxdb-python-test-secret"
TEST_KDF_ITERATIONS = 1000
_TEST_KEY = auth.derive_key(TEST_SECRET, auth.DEFAULT_SALT, TEST_KDF_ITERATIONS)


# Where LuxDB's tools look for the server and the secret (README, "Connecting: address and
# secret").
CONNECTION_VARIABLES = ("LUXDB_ADDRESS", "LUXDB_HOST", "LUXDB_PORT", "LUXDB_SECRET",
                        "LUXDB_SECRET_FILE")


def token_metadata(method):
    """Call metadata with a fresh token of the test servers' key for `method`
    ("/luxdb.v1.LuxDB/QueryStream"), for calls the test channel's interceptor does not sign
    (it signs unary calls only)."""
    return [("authorization", "Bearer " + auth.mint_token(_TEST_KEY, method))]


def server_environment():
    """The environment luxdb-server (and its import mode) runs with in these tests."""
    env = dict(os.environ)
    env["KDF_ITERATIONS"] = str(TEST_KDF_ITERATIONS)
    # Tests run servers side by side: none takes the default metrics port (9484). The metrics
    # tests give --metrics-port, which wins over the variable.
    env["LUXDB_METRICS_PORT"] = "0"
    env.pop("LUXDB_SALT", None)
    env.pop("LUXBD_SALT", None)
    # The tests give addresses and secrets explicitly: none of the caller's may add to them.
    for name in CONNECTION_VARIABLES:
        env.pop(name, None)
    return env
STOP_TIMEOUT_S = 30

# grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING. The health messages are tiny and
# fixed, so they are encoded by hand: Debian's grpcio does not ship grpc_health.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = 1


def _decode_serving_status(data):
    """HealthCheckResponse bytes -> its status field (field 1, varint; absent means 0)."""
    if len(data) >= 2 and data[0] == 0x08:
        return data[1]
    return 0


def server_binary():
    """Path of luxdb-server from LUXDB_SERVER_BIN; fails the test with a clear message."""
    path = os.environ.get("LUXDB_SERVER_BIN")
    if not path:
        pytest.fail(
            "LUXDB_SERVER_BIN is not set: run these tests through CTest (ctest -R python_tests) "
            "or set it to the built luxdb-server binary",
            pytrace=False,
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"LUXDB_SERVER_BIN={path!r} is not an executable file", pytrace=False)
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_import(binary, data_dir, path, name, space, dim, timeout=300):
    """Runs luxdb-server in import mode; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [
            binary,
            "--loglevel", "info",
            "--import-path", str(path),
            "--import-name", name,
            "--import-space", space,
            "--import-dim", str(dim),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class LuxServer:
    """The luxdb-server binary serving `data_dir` on a loopback port, with a client stub.

    start() returns once the gRPC health service reports SERVING (every index loaded);
    stop() sends SIGTERM and fails the test unless the process exits 0 within 30 s.
    """

    def __init__(self, binary, data_dir, log_dir=None, extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)  # more luxdb-server flags
        self.data_dir = str(data_dir)
        self.log_dir = str(log_dir) if log_dir else os.path.dirname(self.data_dir.rstrip("/"))
        self.process = None
        self.channel = None
        self.stub = None
        self.port = None
        self._log_path = None
        self._starts = 0

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def stderr_text(self):
        if self._log_path is None or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _fail(self, message):
        pytest.fail(f"{message}\n--- luxdb-server stderr ({self._log_path}) ---\n"
                    f"{self.stderr_text()}", pytrace=False)

    def start(self, wait=True):
        """Launches the server; with `wait` (the default) returns once it is SERVING, else
        right away (signal_and_wait may then kill it while it loads)."""
        assert self.process is None, "server already running"
        if self.channel is not None:  # left open by signal_and_wait
            self.channel.close()
        self._starts += 1
        self.port = free_port()
        self._log_path = os.path.join(
            self.log_dir, f"luxdb-server-{os.path.basename(self.data_dir)}-{self._starts}.log")
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "--host", "127.0.0.1", "--port", str(self.port),
                 "--loglevel", "info", "--secret", TEST_SECRET, *self.extra_args,
                 self.data_dir],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=server_environment())
        if not wait:
            self.channel = None
            self.stub = None
            return self
        # Connect only once the port accepts: a gRPC channel whose first attempt is refused
        # backs off for seconds before trying again.
        self._wait_until_listening(time.monotonic() + START_TIMEOUT_S)
        self.channel = grpc.intercept_channel(
            grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS),
            auth.TokenInterceptor(_TEST_KEY))
        self.stub = luxdb_pb2_grpc.LuxDBStub(self.channel)
        self._wait_until_serving()
        return self

    def _wait_until_listening(self, deadline):
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"luxdb-server exited with {self.process.returncode} while starting")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        self._kill()
        self._fail(f"luxdb-server not listening on {self.address} within {START_TIMEOUT_S} s")

    def _wait_until_serving(self):
        check = self.channel.unary_unary(
            _HEALTH_CHECK,
            request_serializer=lambda _: b"",  # HealthCheckRequest{service: ""}
            response_deserializer=_decode_serving_status,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"luxdb-server exited with {self.process.returncode} while starting")
            try:
                status = check(None, timeout=2)
                if status == _SERVING:
                    return
                last = f"health status {status}"
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    # No health service: poll a cheap LuxDB call instead.
                    try:
                        self.stub.ListIndexes(luxdb_pb2.ListIndexesRequest(), timeout=2)
                        return
                    except grpc.RpcError as inner:
                        error = inner
                if error.code() not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED):
                    self._fail(f"unexpected {error.code().name} while waiting for "
                               f"luxdb-server: {error.details()}")
                last = f"{error.code().name}: {error.details()}"
            time.sleep(0.1)
        self._kill()
        self._fail(f"luxdb-server not SERVING on {self.address} within {START_TIMEOUT_S} s "
                   f"(last: {last})")

    def _kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        """SIGTERM; asserts a clean exit (code 0) within STOP_TIMEOUT_S."""
        if self.process is None:
            return
        if self.channel is not None:
            self.channel.close()
        self.channel = None
        self.stub = None
        code, _ = self.signal_and_wait(signal.SIGTERM)
        if code != 0:
            self._fail(f"luxdb-server exited with {code} after SIGTERM, expected 0")

    def restart(self):
        self.stop()
        return self.start()

    def signal_and_wait(self, sig, timeout=STOP_TIMEOUT_S):
        """Sends `sig` and waits for the process to end; returns (exit code, seconds taken).
        The channel stays open, so clients see the server go away; start() replaces it."""
        assert self.process is not None, "server not running"
        process, self.process = self.process, None
        started = time.monotonic()
        process.send_signal(sig)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self._fail(f"luxdb-server did not exit within {timeout} s of signal {sig}")
        return code, time.monotonic() - started

    def abandon(self):
        """Kills the process without checks (teardown after a failure already reported)."""
        if self.channel is not None:
            self.channel.close()
        self._kill()
        self.process = None




# Packed repeated fields, encoded straight from numpy arrays: building a protobuf message
# from a Python list of millions of floats takes seconds, parsing these bytes takes
# milliseconds. Proto parsing merges concatenated encodings, so a message is its scalar
# fields' encoding followed by these.


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _packed(field_number, payload):
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def packed_floats(field_number, array):
    """A packed `repeated float` field holding `array` (any shape, row-major)."""
    return _packed(field_number, np.ascontiguousarray(array, dtype="<f4").tobytes())


def packed_uint64s(field_number, array):
    """A packed `repeated uint64` field (varints) holding `array`."""
    return _packed(field_number, b"".join(_varint(int(v)) for v in np.asarray(array).ravel()))


def add_items_request(name, vectors, ids):
    """luxdb_pb2.AddItemsRequest for an (n, dim) float array and n ids."""
    return luxdb_pb2.AddItemsRequest.FromString(
        luxdb_pb2.AddItemsRequest(name=name).SerializeToString()
        + packed_floats(2, vectors) + packed_uint64s(3, ids))


def query_request(name, queries, k, ef=0):
    """luxdb_pb2.QueryIndexRequest for an (n, dim) float array."""
    return luxdb_pb2.QueryIndexRequest.FromString(
        luxdb_pb2.QueryIndexRequest(name=name, k=k, ef=ef).SerializeToString()
        + packed_floats(2, queries))


def query(stub, name, queries, k, ef=0, timeout=120):
    """QueryIndex; returns (ids uint64 (n, k), distances float32 (n, k))."""
    queries = np.asarray(queries, dtype=np.float32)
    response = stub.QueryIndex(query_request(name, queries, k, ef), timeout=timeout)
    assert response.k == k
    n = queries.shape[0]
    ids = np.array(response.ids, dtype=np.uint64).reshape(n, k)
    distances = np.array(response.distances, dtype=np.float32).reshape(n, k)
    return ids, distances

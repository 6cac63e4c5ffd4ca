"""luxdb.sync_client.SyncClient against a real luxdb-server: every method (client_cases),
connecting, the wrong secret, `with`, threads, the error mapping, and the README example."""

import asyncio
import concurrent.futures
import pathlib
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest

import luxdb.sync_client
from client_cases import SCENARIOS, Awaitable, ids_in_pages, query_stream_answers_in_order
from filter_cases import FILTER_SCENARIOS, filtered_query_stream
from luxdb import auth
from luxdb.exceptions import AuthenticationError, LuxDBError, UnknownSpaceException, \
    error_from_rpc
from luxdb.stubs import luxdb_pb2 as pb
from luxdb_testing import TEST_SECRET, free_port, server_environment

MISSING = 2**64 - 1
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python_client.py"


@pytest.mark.parametrize("scenario", SCENARIOS + FILTER_SCENARIOS, ids=lambda s: s.__name__)
def test_scenario(scenario, client_args):
    with luxdb.sync_client.connect(*client_args) as client:
        asyncio.run(scenario(Awaitable(client)))


def test_connect_and_quit_explicitly(client_args):
    client = luxdb.sync_client.SyncClient(*client_args)
    with pytest.raises(LuxDBError, match="not connected"):
        client.get_indexes()
    assert client.connect() is client
    assert client.create_index("a", "l2", 2) is True
    client.quit()
    with pytest.raises(LuxDBError, match="not connected"):
        client.get_indexes()
    client.connect()
    assert client.get_indexes() == ["a"]
    client.quit()


def test_client_is_a_context_manager(client_args):
    with luxdb.sync_client.SyncClient(*client_args) as client:
        assert client.index_exists("a") is False
    assert not client.connected


def test_wrong_secret_fails_at_connect(client_args, monkeypatch):
    host, port, _ = client_args
    client = luxdb.sync_client.SyncClient(host, port, "not-the-secret")
    with pytest.raises(RuntimeError, match="make sure your secret is correct") as info:
        client.connect()
    assert isinstance(info.value, AuthenticationError)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert not client.connected
    with pytest.raises(AuthenticationError):
        with luxdb.sync_client.connect(host, port, "not-the-secret"):
            pytest.fail("connected with a wrong secret")
    # Without any secret the client refuses to start unless told the server is --insecure
    # (insecure=True, or the original API's secret=None); then its calls carry no token,
    # which this server refuses.
    monkeypatch.delenv("LUXDB_SECRET", raising=False)
    monkeypatch.delenv("LUXDB_SECRET_FILE", raising=False)
    with pytest.raises(ValueError, match="no secret: .* insecure=True"):
        luxdb.sync_client.SyncClient(host, port)
    for client in (luxdb.sync_client.SyncClient(host, port, insecure=True),
                   luxdb.sync_client.SyncClient(host, port, None)):
        with pytest.raises(AuthenticationError, match="missing 'authorization"):
            client.connect()
    monkeypatch.setenv("LUXDB_SECRET", "from-the-environment")
    with pytest.raises(AuthenticationError, match="missing 'authorization"):
        luxdb.sync_client.SyncClient(host, port, None).connect()  # None: no token, explicitly


def test_timeout_bounds_every_call(client_args):
    with pytest.raises(LuxDBError) as info:
        luxdb.sync_client.SyncClient(*client_args, timeout=1e-6).connect()
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    with luxdb.sync_client.connect(*client_args, timeout=30) as client:
        assert client.get_indexes() == []


def test_salt_from_the_environment_must_match_the_servers(client_args, monkeypatch):
    monkeypatch.setenv("LUXDB_SALT", "another-salt")
    with pytest.raises(AuthenticationError):
        luxdb.sync_client.SyncClient(*client_args).connect()


def test_unreachable_server_fails_at_connect(client_environment):
    port = free_port()
    with pytest.raises(LuxDBError, match=f"cannot connect to LuxDB at 127.0.0.1:{port}") as info:
        luxdb.sync_client.SyncClient("127.0.0.1", port, TEST_SECRET).connect()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_threads_share_one_client(client_args):
    with luxdb.sync_client.connect(*client_args) as client:
        client.create_index("t", "l2", 3)
        client.init_index("t", 100)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: client.add_items("t", [i, i, i], i), range(20)))
            results = list(pool.map(lambda i: client.query_index("t", [i, i, i], 1), range(20)))
        assert [labels[0, 0] for labels, _ in results] == list(range(20))


def test_server_side_space_errors_map_to_unknown_space(luxdb_server):
    # The clients refuse unknown spaces before calling; a raw call shows the mapping.
    with pytest.raises(grpc.RpcError) as raw:
        luxdb_server.stub.CreateIndex(pb.CreateIndexRequest(name="s", dim=3))
    error = error_from_rpc(raw.value, "s")
    assert type(error) is UnknownSpaceException
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.name == "s"
    assert "space is unspecified" in str(error)


def test_token_helpers_are_exported():
    key = auth.derive_key("s", auth.DEFAULT_SALT, 10)
    assert len(auth.mint_token(key, "/luxdb.v1.LuxDB/ListIndexes")) == 76
    assert pb.QueryIndexRequest(name="x", k=3).k == 3


def test_example_script_runs(client_args):
    host, port, secret = client_args
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), f"{host}:{port}"], capture_output=True, text=True,
        timeout=60, env={**server_environment(), "LUXDB_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert "nearest: [[0, " in result.stdout and "], [1, " in result.stdout
    assert "count: 1000" in result.stdout
    assert "red: [[5, 7, 18446744073709551615]]" in result.stdout
    assert "attributes: [{'colour': 'red', 'tags': ['a', 'b']}, {}]" in result.stdout
    assert "error: index 'missing' does not exist" in result.stdout


def test_mutual_tls(luxdb_tls_server, tls_files):
    port = luxdb_tls_server
    with luxdb.sync_client.connect("127.0.0.1", port, TEST_SECRET, tls_ca=tls_files["ca"],
                                   tls_cert=tls_files["client"],
                                   tls_key=tls_files["client_key"]) as client:
        assert client.create_index("secure", "l2", 2) is True
        client.init_index("secure", 5)
        client.add_items("secure", [1, 2], 7)
        assert client.query_index("secure", [1, 2], 1)[0].tolist() == [[7]]
    # PEM bytes work as well as paths; without a client certificate, or without TLS, the
    # server cannot be reached.
    ca = tls_files["ca"].read_bytes()
    for options in [{"tls_ca": ca}, {}]:
        with pytest.raises(LuxDBError) as info:
            luxdb.sync_client.SyncClient("127.0.0.1", port, TEST_SECRET, **options).connect()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    with luxdb.sync_client.connect("127.0.0.1", port, TEST_SECRET, tls_ca=ca,
                                   tls_cert=tls_files["client"].read_bytes(),
                                   tls_key=tls_files["client_key"].read_bytes()) as client:
        assert client.get_indexes() == ["secure"]


def test_bulk_fields_encode_and_decode_as_protobuf_does():
    # The clients encode vectors and ids from numpy and decode replies without protobuf's
    # per-element objects; these must agree with protobuf byte for byte.
    from luxdb import _wire
    ids = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1, 2**63, 2**64 - 1],
                   dtype=np.uint64)
    vectors = np.array([[0.5, -1.0, 3.25], [1e-30, 7.0, -0.0]], dtype=np.float32)
    request = _wire.request(pb.AddItemsRequest(name="n"), _wire.packed_floats(2, vectors),
                            _wire.packed_uint64s(3, ids))
    expected = pb.AddItemsRequest(name="n", vectors=vectors.ravel().tolist(), ids=ids.tolist())
    assert request == expected.SerializeToString()

    reply = pb.QueryIndexResponse(ids=ids.tolist(), distances=vectors.ravel().tolist(), k=3)
    fields = _wire.scan(reply.SerializeToString())
    assert _wire.uint64_field(fields, 1).tolist() == ids.tolist()
    assert _wire.float_field(fields, 2).tolist() == vectors.ravel().tolist()
    assert _wire.int_field(fields, 3) == 3
    assert _wire.uint64_field(_wire.scan(b""), 1).size == 0
    # Short runs of varints are decoded by a Python loop, long ones by numpy: both agree with
    # protobuf, and both refuse a truncated one.
    for repeat in (1, 40):
        many = np.tile(ids, repeat)
        reply = pb.QueryIndexResponse(ids=many.tolist()).SerializeToString()
        assert _wire.uint64_field(_wire.scan(reply), 1).tolist() == many.tolist()
        payload = _wire.varints(many)
        with pytest.raises(_wire.MalformedResponse):
            _wire.decode_varints(payload[:-1])


def test_attributes_encode_as_protobuf_does():
    # The clients encode attributes by hand, for speed; protobuf must read what protobuf
    # would have written, for every kind of value.
    from luxdb import _attributes, _wire

    items = [
        {"i": 7, "neg": -(2**63), "max": 2**63 - 1, "zero": 0, "d": -0.25, "b": True,
         "f": False, "s": "naïve ✓", "empty": "", "ls": ["a", "bb"], "li": (-1, 300)},
        {},
        {"np_i": np.int32(-5), "np_d": np.float32(0.5), "np_b": np.bool_(False),
         "np_l": np.array([2**40, 3], dtype=np.int64), "np_s": np.array(["x", "y"])},
    ]
    expected = pb.AddItemsRequest(name="n", attributes=[
        pb.Attributes(attributes=[
            pb.Attribute(key=key, values=[
                pb.Value(b=bool(v)) if isinstance(v, (bool, np.bool_)) else
                pb.Value(i=int(v)) if isinstance(v, (int, np.integer)) else
                pb.Value(d=float(v)) if isinstance(v, (float, np.floating)) else
                pb.Value(s=str(v))
                for v in (value if isinstance(value, (list, tuple, np.ndarray)) else [value])])
            for key, value in item.items()])
        for item in items])
    ids = np.array([1, 2, 3], dtype=np.uint64)
    encoded = _wire.request(pb.AddItemsRequest(name="n"),
                            _attributes.attributes_field(4, items, ids, "n"))
    assert pb.AddItemsRequest.FromString(encoded) == expected
    assert encoded == expected.SerializeToString()
    assert [_attributes.attributes_dict(a) for a in expected.attributes] == [
        {**items[0], "li": [-1, 300]}, {},
        {"np_i": -5, "np_d": 0.5, "np_b": False, "np_l": [2**40, 3], "np_s": ["x", "y"]}]


def test_attributes_survive_a_restart_and_a_kill(luxdb_server, client_environment):
    tenant_1 = {"must": [{"key": "tenant", "equals": 1}]}

    def check(expected_attributes, expected_tenant_1):
        with luxdb.sync_client.connect("127.0.0.1", luxdb_server.port, TEST_SECRET) as client:
            _, attributes = client.get_items("d", [1, 2, 3], with_attributes=True)
            assert attributes == expected_attributes
            labels, _ = client.query_index("d", [0, 0], 3, filter=tenant_1)
            assert labels.tolist() == [expected_tenant_1]

    with luxdb.sync_client.connect("127.0.0.1", luxdb_server.port, TEST_SECRET) as client:
        client.create_index("d", "l2", 2)
        client.init_index("d", 10)
        client.add_items("d", [[1, 0], [2, 0], [3, 0]], [1, 2, 3],
                         [{"tenant": 1, "tags": ["a", "b"]}, {"tenant": 1}, {"tenant": 2}])
        client.set_attributes("d", 3, {"tenant": 1, "x": 0.5})
        client.add_items("d", [[2, 0]], [2])  # replaced without attributes
    luxdb_server.restart()
    check([{"tags": ["a", "b"], "tenant": 1}, {}, {"tenant": 1, "x": 0.5}],
          [1, 3, MISSING])
    with luxdb.sync_client.connect("127.0.0.1", luxdb_server.port, TEST_SECRET) as client:
        client.set_attributes("d", [1, 2], [{}, {"tenant": 1}])
    luxdb_server.signal_and_wait(signal.SIGKILL)  # acknowledged writes are durable
    luxdb_server.start()
    check([{}, {"tenant": 1}, {"tenant": 1, "x": 0.5}], [2, 3, MISSING])


def test_get_ids_pages_through_more_ids_than_one_reply_holds(start_luxdb_server):
    port = start_luxdb_server("--max-message-mb", "1")
    with luxdb.sync_client.connect("127.0.0.1", port, TEST_SECRET) as client:
        asyncio.run(ids_in_pages(Awaitable(client)))


def test_batch_above_the_message_cap_names_a_batch_size_that_fits(start_luxdb_server):
    port = start_luxdb_server("--max-message-mb", "1")
    with luxdb.sync_client.connect("127.0.0.1", port, TEST_SECRET) as client:
        client.create_index("capped", "l2", 100)
        client.init_index("capped", 10_000)
        with pytest.raises(LuxDBError) as info:
            client.add_items("capped", np.zeros((5000, 100)), np.arange(5000))
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        fits = int(str(info.value).split("send at most ")[1].split()[0])
        assert "--max-message-mb" in str(info.value) and 2000 < fits < 2700
        assert client.count("capped") == 0
        client.add_items("capped", np.zeros((fits, 100)), np.arange(fits))  # it does fit
        assert client.count("capped") == fits
        with pytest.raises(LuxDBError, match="query vectors per call"):
            client.query_index("capped", np.zeros((5000, 100)), 1)


def test_query_stream(client_args):
    with luxdb.sync_client.connect(*client_args) as client:

        async def collect(name, queries, k, **options):
            answers = []
            try:
                for answer in client.query_stream(name, queries, k, **options):
                    answers.append(answer)
            except LuxDBError as error:
                return answers, error
            return answers, None

        asyncio.run(query_stream_answers_in_order(Awaitable(client), collect))
        asyncio.run(filtered_query_stream(Awaitable(client), collect))
        # Leaving a stream early cancels it; the client goes on.
        for _ in client.query_stream("s", [np.zeros(8)] * 100, 1):
            break
        assert client.query_index("s", np.zeros(8), 1)[0].shape == (1, 1)

"""luxdb.client.Client (asyncio) against a real luxdb-server: every method (client_cases),
connecting, the wrong secret, `async with`, concurrency, and the grpc.aio token interceptor."""

import asyncio
import inspect

import grpc
import numpy as np
import grpc.aio
import pytest

import luxdb.client
from client_cases import SCENARIOS, ids_in_pages, query_stream_answers_in_order
from filter_cases import FILTER_SCENARIOS, filtered_query_stream
from luxdb import auth
from luxdb.exceptions import AuthenticationError, LuxDBError
from luxdb.stubs import luxdb_pb2 as pb
from luxdb.stubs import luxdb_pb2_grpc as pb_grpc
from luxdb_testing import TEST_KDF_ITERATIONS, TEST_SECRET, free_port


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", SCENARIOS + FILTER_SCENARIOS, ids=lambda s: s.__name__)
async def test_scenario(scenario, client_args):
    async with luxdb.client.connect(*client_args) as client:
        await scenario(client)


@pytest.mark.asyncio
async def test_get_ids_pages_through_more_ids_than_one_reply_holds(start_luxdb_server):
    port = start_luxdb_server("--max-message-mb", "1")
    async with luxdb.client.connect("127.0.0.1", port, TEST_SECRET) as client:
        await ids_in_pages(client)


@pytest.mark.asyncio
async def test_connect_and_quit_explicitly(client_args):
    client = luxdb.client.Client(*client_args)
    with pytest.raises(LuxDBError, match="not connected"):
        await client.get_indexes()
    assert await client.connect() is client
    assert await client.create_index("a", "l2", 2) is True
    await client.quit()
    with pytest.raises(LuxDBError, match="not connected"):
        await client.get_indexes()
    await client.connect()  # again, on a new channel
    assert await client.get_indexes() == ["a"]
    await client.quit()


@pytest.mark.asyncio
async def test_client_is_an_async_context_manager(client_args):
    async with luxdb.client.Client(*client_args) as client:
        assert await client.index_exists("a") is False


@pytest.mark.asyncio
async def test_wrong_secret_fails_at_connect(client_args):
    host, port, _ = client_args
    client = luxdb.client.Client(host, port, "not-the-secret")
    with pytest.raises(RuntimeError, match="make sure your secret is correct") as info:
        await client.connect()
    assert isinstance(info.value, AuthenticationError)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert not client.connected
    with pytest.raises(AuthenticationError):
        async with luxdb.client.connect(host, port, "not-the-secret"):
            pytest.fail("connected with a wrong secret")


@pytest.mark.asyncio
async def test_other_kdf_iterations_fail_at_connect(client_args):
    host, port, secret = client_args
    with pytest.raises(AuthenticationError):
        await luxdb.client.Client(host, port, secret, iterations=TEST_KDF_ITERATIONS + 1).connect()
    # Explicit parameters win over the environment.
    client = luxdb.client.Client(host, port, secret, iterations=TEST_KDF_ITERATIONS,
                                 salt=auth.DEFAULT_SALT)
    await client.connect()
    await client.quit()


@pytest.mark.asyncio
async def test_unreachable_server_fails_at_connect(client_environment):
    port = free_port()
    with pytest.raises(LuxDBError, match=f"cannot connect to LuxDB at 127.0.0.1:{port}") as info:
        await luxdb.client.Client("127.0.0.1", port, TEST_SECRET).connect()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_concurrent_calls_share_one_client(client_args):
    async with luxdb.client.connect(*client_args) as client:
        await client.create_index("c", "l2", 3)
        await client.init_index("c", 100)
        await asyncio.gather(*(client.add_items("c", [[i, i, i]], [i]) for i in range(20)))
        results = await asyncio.gather(*(client.query_index("c", [i, i, i], 1)
                                         for i in range(20)))
        assert [labels[0, 0] for labels, _ in results] == list(range(20))


@pytest.mark.asyncio
async def test_plain_grpc_aio_with_token_interceptor(luxdb_server):
    key = auth.derive_key(TEST_SECRET, auth.DEFAULT_SALT, TEST_KDF_ITERATIONS)
    async with grpc.aio.insecure_channel(
            luxdb_server.address, interceptors=[auth.AsyncTokenInterceptor(key)]) as channel:
        stub = pb_grpc.LuxDBStub(channel)
        await stub.CreateIndex(pb.CreateIndexRequest(name="raw", space=pb.COSINE, dim=2))
        reply = await stub.ListIndexes(pb.ListIndexesRequest(),
                                       metadata=(("x-caller", "test"),))
        assert [info.name for info in reply.indexes] == ["raw"]
    async with grpc.aio.insecure_channel(luxdb_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.LuxDBStub(channel).ListIndexes(pb.ListIndexesRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def untyped_signature(function):
    """inspect.signature(function) without its annotations, as a str."""
    signature = inspect.signature(function)
    return str(signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty))


def test_methods_are_coroutine_functions_with_the_original_signatures():
    assert inspect.iscoroutinefunction(luxdb.client.Client.query_index)
    assert inspect.iscoroutinefunction(luxdb.client.Client.connect)
    assert untyped_signature(luxdb.client.Client.init_index) == \
        "(self, name, max_elements, ef_construction=200, M=16, random_seed=100)"
    assert untyped_signature(luxdb.client.Client.query_index) == \
        "(self, name, vector, k=1, *, filter=None)"
    assert untyped_signature(luxdb.client.Client.add_items) == \
        "(self, name, data, ids, attributes=None)"
    assert untyped_signature(luxdb.client.Client.get_elements) == \
        "(self, name, ids, with_attributes=False)"
    assert inspect.iscoroutinefunction(luxdb.client.Client.get_elements)
    assert "k nearest" in luxdb.client.Client.query_index.__doc__
    assert inspect.iscoroutinefunction(luxdb.client.Client.set_attributes)


@pytest.mark.asyncio
async def test_mutual_tls(luxdb_tls_server, tls_files):
    async with luxdb.client.connect("127.0.0.1", luxdb_tls_server, TEST_SECRET,
                                    tls_ca=tls_files["ca"], tls_cert=tls_files["client"],
                                    tls_key=tls_files["client_key"]) as client:
        assert await client.create_index("secure", "l2", 2) is True
        assert await client.get_indexes() == ["secure"]
    with pytest.raises(LuxDBError) as info:  # plaintext to a TLS server
        await luxdb.client.Client("127.0.0.1", luxdb_tls_server, TEST_SECRET).connect()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_query_stream(client_args):
    async with luxdb.client.connect(*client_args) as client:

        async def collect(name, queries, k, **options):
            answers = []
            try:
                async for answer in client.query_stream(name, queries, k, **options):
                    answers.append(answer)
            except LuxDBError as error:
                return answers, error
            return answers, None

        await query_stream_answers_in_order(client, collect)
        await filtered_query_stream(client, collect)

        async def zeros():
            for _ in range(100):
                yield np.zeros(8, dtype=np.float32)

        # An async iterable of queries; leaving early cancels the stream, the client goes on.
        async for labels, _ in client.query_stream("s", zeros(), 1):
            assert labels.shape == (1, 1)
            break
        assert (await client.query_index("s", np.zeros(8), 1))[0].shape == (1, 1)

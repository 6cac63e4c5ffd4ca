"""The asyncio LuxDB client (grpc.aio), with the original LuxDB client's API:

    async with luxdb.client.connect() as client:  # or connect("127.0.0.1", 8484, secret)
        await client.create_index("docs", "cosine", 384)
        await client.init_index("docs", max_elements=100_000)
        await client.add_items("docs", vectors, ids)
        labels, distances = await client.query_index("docs", queries, k=10)

Every operation is a coroutine; see luxdb._base.Operations for what each one does,
luxdb.exceptions for the errors they raise and luxdb.settings for where connect() finds the
server and the secret when not given. luxdb.sync_client has the same API, blocking.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Optional, Union

import grpc
import grpc.aio

from luxdb import settings
from luxdb._base import (SPLIT_IN_FLIGHT, Answer, ClientBase, Filter, StreamQueries, Vectors,
                         awaitable_operations)
from luxdb.exceptions import LuxDBError


@awaitable_operations
class Client(ClientBase):
    """An asyncio LuxDB client: Client(host, port, secret, **options) (each may be left out:
    see luxdb._base.ClientBase for them and the options), then `await connect()` inside the
    event loop that will use it."""

    async def connect(self) -> Client:
        """Opens the channel and proves the secret with one cheap call: a wrong secret raises
        AuthenticationError (a RuntimeError) here, an unreachable server LuxDBError."""
        if self._channel is None:
            self._channel = self._open_channel(grpc.aio)
        try:
            await self._call(self._connect_probe())
        except LuxDBError as error:
            await self.quit()
            raise self._connect_error(error) from None
        return self

    async def quit(self) -> None:
        """Closes the channel (calls in flight are cancelled). connect() may follow."""
        channel = self._forget_channel()
        if channel is not None:
            await channel.close()

    async def _call(self, call):
        try:
            reply = await self._callable(call.method)(call.request, **self._call_arguments(call))
        except grpc.RpcError as error:
            raise self._error(error, call) from None
        return call.decode(reply)

    async def query_stream(self, name: str,
                           queries: Union[Iterable[Vectors], AsyncIterable[Vectors]],
                           k: int = 1, *, ef: int = 0,
                           filter: Optional[Filter] = None) -> AsyncIterator[Answer]:
        """query_index for many query arrays over one QueryStream call: `queries` is an
        iterable or async iterable of query arrays (each one vector or a 2-D batch), read as
        the stream sends them; an async iterator of their (labels, distances), in order, as
        query_index would return them:

            async for labels, distances in client.query_stream("docs", batches, k=10): ...

        The arrays are sent ahead of their answers, so a long stream costs about one search
        per query rather than one round trip. The first query the server refuses raises its
        error (LuxDBError) once the answers before it were yielded; an array that is not a
        valid query raises after them too. `timeout` covers the whole stream. Stopping early
        cancels the stream. `filter` (see query_index) applies to every query."""
        stream = StreamQueries(name, k, ef, filter)
        open_stream = self._callable(StreamQueries.METHOD, "stream_stream")
        responses = open_stream(stream.async_requests(queries),
                                **self._call_arguments(stream.call()))
        refused = None
        try:
            async for reply in responses:
                for answer in stream.answers(reply):
                    yield answer
        except grpc.RpcError as error:
            refused = self._error(error, stream.call())
        finally:
            responses.cancel()
        if refused is not None:
            # A message of several arrays: a call per array names the one refused.
            for call in stream.refused(refused):
                yield await self._call(call)
            raise refused
        if stream.failure is not None:
            raise stream.failure

    async def _call_split(self, parts, whole, join):
        in_flight = collections.deque()  # tasks, oldest first
        results = []
        try:
            for make in parts:
                in_flight.append(asyncio.ensure_future(self._call(make())))
                if len(in_flight) >= SPLIT_IN_FLIGHT:
                    results.append(await in_flight.popleft())
            while in_flight:
                results.append(await in_flight.popleft())
        except LuxDBError as error:
            if error.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return await self._call(whole())
        finally:
            for task in in_flight:
                task.cancel()
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a later part's error is not news
        return join(results)

    async def _call_each(self, calls):
        try:
            call = next(calls)
            while True:
                call = calls.send(await self._call(call))
        except StopIteration as done:
            return done.value

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.quit()


@contextlib.asynccontextmanager
async def connect(host: Optional[str] = None, port: Union[int, str, None] = None,
                  secret: Optional[settings.Secret] = settings.NOT_GIVEN, *, address: Optional[str] = None,
                  secret_file: Union[str, os.PathLike[str], None] = None,
                  **options: Any) -> AsyncIterator[Client]:
    """`async with connect(host, port, secret) as client:` a connected Client, quit on exit.
    Each argument may be left out (`async with connect() as client:`): the address and secret
    then come from the environment (see luxdb.settings); `options` are Client's."""
    client = Client(host, port, secret, address=address, secret_file=secret_file, **options)
    await client.connect()
    try:
        yield client
    finally:
        await client.quit()

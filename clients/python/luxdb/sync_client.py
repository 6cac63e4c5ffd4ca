"""The blocking LuxDB client (grpc), with the original LuxDB SyncClient's API:

    with luxdb.sync_client.connect() as client:  # or connect("127.0.0.1", 8484, secret)
        client.create_index("docs", "cosine", 384)
        client.init_index("docs", max_elements=100_000)
        client.add_items("docs", vectors, ids)
        labels, distances = client.query_index("docs", queries, k=10)

See luxdb._base.Operations for what each operation does, luxdb.exceptions for the errors
they raise and luxdb.settings for where connect() finds the server and the secret when not
given. A SyncClient may be shared by threads. luxdb.client is the asyncio version.
"""

from __future__ import annotations

import collections
import contextlib
import os
from typing import Any, Iterable, Iterator, Optional, Union

import grpc

from luxdb import settings
from luxdb._base import SPLIT_IN_FLIGHT, Answer, ClientBase, Filter, StreamQueries, Vectors
from luxdb.exceptions import LuxDBError


class SyncClient(ClientBase):
    """A blocking LuxDB client: SyncClient(host, port, secret, **options) (each may be left
    out: see luxdb._base.ClientBase for them and the options), then connect()."""

    def connect(self) -> SyncClient:
        """Opens the channel and proves the secret with one cheap call: a wrong secret raises
        AuthenticationError (a RuntimeError) here, an unreachable server LuxDBError."""
        if self._channel is None:
            self._channel = self._open_channel(grpc)
        try:
            self._call(self._connect_probe())
        except LuxDBError as error:
            self.quit()
            raise self._connect_error(error) from None
        return self

    def quit(self) -> None:
        """Closes the channel (calls in flight are cancelled). connect() may follow."""
        channel = self._forget_channel()
        if channel is not None:
            channel.close()

    def _call(self, call):
        try:
            reply = self._callable(call.method)(call.request, **self._call_arguments(call))
        except grpc.RpcError as error:
            raise self._error(error, call) from None
        return call.decode(reply)

    def query_stream(self, name: str, queries: Iterable[Vectors], k: int = 1, *, ef: int = 0,
                     filter: Optional[Filter] = None) -> Iterator[Answer]:
        """query_index for many query arrays over one QueryStream call: `queries` is an
        iterable of query arrays (each one vector or a 2-D batch), read as the stream sends
        them; returns an iterator of their (labels, distances), in order, as query_index
        would return them. The arrays are sent ahead of their answers, so a long stream
        costs about one search per query rather than one round trip. The first query the
        server refuses raises its error (LuxDBError) once the answers before it were
        yielded; an array that is not a valid query raises after them too. `timeout` covers
        the whole stream. Stopping early (breaking out of the loop) cancels the stream.
        `filter` (see query_index) applies to every query; a bad one raises here."""
        stream = StreamQueries(name, k, ef, filter)
        open_stream = self._callable(StreamQueries.METHOD, "stream_stream")
        responses = open_stream(stream.requests(iter(queries)),
                                **self._call_arguments(stream.call()))
        return self._answers(stream, responses)

    def _answers(self, stream, responses):
        try:
            for reply in responses:
                yield from stream.answers(reply)
        except grpc.RpcError as error:
            refused = self._error(error, stream.call())
        else:
            refused = None
        finally:
            responses.cancel()
        if refused is not None:
            # A message of several arrays: a call per array names the one refused.
            for call in stream.refused(refused):
                yield self._call(call)
            raise refused
        if stream.failure is not None:
            raise stream.failure

    def _call_split(self, parts, whole, join):
        in_flight = collections.deque()  # (call, future), oldest first
        results = []
        try:
            for make in parts:
                call = make()
                in_flight.append((call, self._callable(call.method).future(
                    call.request, **self._call_arguments(call))))
                if len(in_flight) >= SPLIT_IN_FLIGHT:
                    results.append(self._result(*in_flight.popleft()))
            while in_flight:
                results.append(self._result(*in_flight.popleft()))
        except LuxDBError as error:
            if error.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return self._call(whole())
        finally:
            for _, future in in_flight:
                future.cancel()
        return join(results)

    def _result(self, call, future):
        try:
            reply = future.result()
        except grpc.RpcError as error:
            raise self._error(error, call) from None
        return call.decode(reply)

    def _call_each(self, calls):
        try:
            call = next(calls)
            while True:
                call = calls.send(self._call(call))
        except StopIteration as done:
            return done.value

    def __enter__(self) -> SyncClient:
        return self.connect()

    def __exit__(self, *exc_info: Any) -> None:
        self.quit()


@contextlib.contextmanager
def connect(host: Optional[str] = None, port: Union[int, str, None] = None,
            secret: Optional[settings.Secret] = settings.NOT_GIVEN, *, address: Optional[str] = None,
            secret_file: Union[str, os.PathLike[str], None] = None,
            **options: Any) -> Iterator[SyncClient]:
    """`with connect(host, port, secret) as client:` a connected SyncClient, quit on exit.
    Each argument may be left out (`with connect() as client:`): the address and secret then
    come from the environment (see luxdb.settings); `options` are SyncClient's."""
    client = SyncClient(host, port, secret, address=address, secret_file=secret_file, **options)
    client.connect()
    try:
        yield client
    finally:
        client.quit()

"""What the async and the sync client share: every operation's request and reply handling, the
channel setup, the call tokens and the error mapping. A client adds only how a call is made
(`_call`: awaited with grpc.aio, or blocking with grpc) and how it connects and quits."""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import queue
import re
import threading
from typing import (Any, Callable, Dict, List, Literal, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union, overload)

import grpc
import numpy as np
import numpy.typing as npt

from luxdb import _attributes, _wire, auth, settings
from luxdb.exceptions import (AuthenticationError, InvalidArgumentError, LuxDBError,
                              UnknownSpaceException, error_from_rpc)
from luxdb.v1 import luxdb_pb2 as pb

# The types of the operations' arguments and results.
Ids = Union[int, Sequence[int], npt.ArrayLike]  # one id or many (uint64 values)
Vectors = npt.ArrayLike  # one vector or an (n, dim) array-like of numbers
Attributes = Mapping[str, Any]  # an item's attributes: see add_items
Filter = Mapping[str, Any]  # a query filter: see query_index
Answer = Tuple[np.ndarray, np.ndarray]  # (labels, distances), each of shape (n, k)
PemSource = Union[str, bytes, os.PathLike[str]]  # a PEM file's path, or its contents

SERVICE_PATH = "/luxdb.v1.LuxDB/"
SPACES = {"l2": pb.L2, "ip": pb.IP, "cosine": pb.COSINE}
_SPACE_NAMES = {value: name for name, value in SPACES.items()}

# The server caps messages (--max-message-mb, 256 MiB by default) and answers
# RESOURCE_EXHAUSTED above it (ClientBase._error then names a batch size that fits); the
# client adds no lower cap of its own.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)
# A name that passes the server's name check: connect() asks whether it exists, which proves
# the token without touching any index.
_CONNECT_PROBE_NAME = "luxdb-connect-probe"
# gRPC's own refusal of a request above the server's --max-message-mb.
_TOO_LARGE = re.compile(r"Received message larger than max \((\d+) vs\. (\d+)\)")


class Call(NamedTuple):
    """One unary call: full method path, serialised request, reply bytes -> result."""
    method: str
    request: bytes
    decode: Callable[[bytes], Any]
    name: Optional[str] = None  # the index the call is about, for errors
    batch: Optional[tuple] = None  # (count, noun) of the items the request carries


def _message_call(rpc, request, read=lambda reply: None):
    reply_type = getattr(pb, rpc + "Response")
    return Call(SERVICE_PATH + rpc, request.SerializeToString(),
                lambda data: read(reply_type.FromString(data)), getattr(request, "name", None))


def _whole(value, what, bits):
    """`value` as an int in [0, 2**bits), or InvalidArgumentError naming `what`."""
    try:
        number = int(value)
        if number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what} must be a whole number, got {value!r}",
                                   code=grpc.StatusCode.INVALID_ARGUMENT) from None
    if not 0 <= number < 1 << bits:
        raise InvalidArgumentError(
            f"{what} must be between 0 and {(1 << bits) - 1}, got {number}",
            code=grpc.StatusCode.INVALID_ARGUMENT)
    return number


def _as_vectors(data, what, name):
    """`data` (one vector or n vectors, any array-like) as a float32 (n, dim) array."""
    try:
        array = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{what} for index '{name}' are not an array of numbers: "
                                   f"{error}", code=grpc.StatusCode.INVALID_ARGUMENT,
                                   name=name) from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise InvalidArgumentError(
            f"{what} for index '{name}' must be one vector or a 2-D array of vectors, got an "
            f"array of shape {array.shape}", code=grpc.StatusCode.INVALID_ARGUMENT, name=name)
    return array


def _as_ids(ids, name):
    """`ids` (one id or any array-like of them) as a flat uint64 array."""
    array = np.asarray(ids)
    if array.size == 0:
        return np.empty(0, dtype=np.uint64)
    if array.dtype.kind == "u":
        return array.astype(np.uint64, copy=False).ravel()
    if array.dtype.kind == "i":
        if (array < 0).any():
            raise InvalidArgumentError(
                f"ids for index '{name}' must not be negative, got {int(array.min())}",
                code=grpc.StatusCode.INVALID_ARGUMENT, name=name)
        return array.astype(np.uint64).ravel()
    # Floats, or Python ints that numpy could not fit in one integer type (it turns
    # [1, 2**64 - 2] into floats): check the original values one by one.
    if not isinstance(ids, np.ndarray):
        array = np.asarray(ids, dtype=object)
    return np.array([_whole(v, f"id for index '{name}'", 64) for v in array.ravel()],
                    dtype=np.uint64)


def _malformed_page(name, what):
    return LuxDBError(f"malformed GetIds page of index '{name}' from the server: {what}",
                      code=grpc.StatusCode.INTERNAL, name=name)


def _space_value(space, name):
    value = SPACES.get(space.lower()) if isinstance(space, str) else None
    if value is None:
        raise UnknownSpaceException(
            f"index '{name}': unknown space {space!r}; use 'l2', 'ip' or 'cosine'",
            code=grpc.StatusCode.INVALID_ARGUMENT, space=space, name=name)
    return value


def _info_dict(info):
    return {
        "space": _SPACE_NAMES.get(info.space, str(info.space)),
        "dim": info.dim,
        "M": info.m,
        "ef_construction": info.ef_construction,
        "ef": info.ef,
        "max_elements": info.max_elements,
        "element_count": info.element_count,
        "deleted_count": info.deleted_count,
        "tombstones": info.tombstones,
        "memory_bytes": info.memory_bytes,
        "compacting": info.compacting,
        "initialized": info.initialized,
    }


# query_index sends more than twice this many bytes of query vectors in calls of about this
# size, this many at once: the server searches one while the next arrives, and no part waits
# for the whole request to be sent, received and parsed (one 31 MiB call of 10,000 vectors of
# 784 dimensions reached 0.56-0.74x of in-process batch QPS).
SPLIT_BYTES = 1 << 20
SPLIT_IN_FLIGHT = 3


def _join_answers(answers):
    """One (labels, distances) of the (labels, distances) of consecutive parts."""
    return (np.concatenate([labels for labels, _ in answers]),
            np.concatenate([distances for _, distances in answers]))


def _filter_bytes(query_filter, name):
    """The serialised pb.Filter of query_index's `filter` argument, or None for no filter."""
    return None if query_filter is None else _attributes.filter_bytes(query_filter, name,
                                                                      _as_ids)


def _query_call(rpc, name, vector, k, ef, query_filter=None):
    """The Call of one query message (QueryIndex's, or one of a QueryStream's);
    `query_filter` is a serialised pb.Filter (_filter_bytes) or None."""
    queries = _as_vectors(vector, "query vectors", name)
    n = queries.shape[0]
    head = pb.QueryIndexRequest(name=name, k=k, ef=ef)
    fields = [_wire.packed_floats(2, queries)]
    if query_filter is not None:
        fields.append(_wire.message_field(5, query_filter))
    request = _wire.request(head, *fields)

    def decode(data):
        fields = _wire.scan(data)
        labels = _wire.uint64_field(fields, 1)
        distances = _wire.float_field(fields, 2)
        if labels.size != n * k or distances.size != n * k:
            raise InvalidArgumentError(
                f"query vectors of dimension {queries.shape[1]} do not match index "
                f"'{name}': the server read {labels.size // max(k, 1)} queries, not {n}",
                code=grpc.StatusCode.INVALID_ARGUMENT, name=name)
        return labels.reshape(n, k), distances.reshape(n, k)

    return Call(SERVICE_PATH + rpc, request, decode, name, (n, "query vectors"))


# query_stream sends consecutive query arrays of one dimension that are already waiting to be
# sent in one QueryStream message, up to these bounds, and splits the answer back: a Python
# gRPC stream costs ~0.2 ms of client CPU per message, several times the search of one vector.
# Arrays are never held back to fill a message.
STREAM_GROUP_ROWS = 64
STREAM_GROUP_BYTES = 1 << 20
_END = object()  # the caller's queries are exhausted


class _Failed(NamedTuple):
    error: Exception  # raised by the caller's iterable or by an array that is not a query


class StreamQueries:
    """One QueryStream call of the clients' query_stream: the caller's query arrays, checked
    and grouped into request messages as gRPC asks for them, and each message's arrays, to
    split its answer back into one (labels, distances) per array, in order.

    An array that cannot be sent (or an exception from the caller's iterable) ends the
    requests (the server then answers those before it and ends the stream OK) and is kept in
    `failure`, for the reader of the answers to raise after the last one."""

    METHOD = SERVICE_PATH + "QueryStream"

    def __init__(self, name, k, ef, query_filter=None):
        self.name = name
        self.k = _whole(k, "k", 32)
        self.ef = _whole(ef, "ef", 32)
        self.filter = _filter_bytes(query_filter, name)  # sent in every message
        self.sent = collections.deque()  # per message sent: (its arrays, its decoder)
        self.failure = None
        self._carry = None  # an item taken but not fitting the last message

    def call(self):
        """A Call describing the stream, for errors and the token."""
        return Call(self.METHOD, b"", None, self.name)

    def checked(self, vector):
        """`vector` as a (rows, dim) float32 array, or _Failed."""
        try:
            return _as_vectors(vector, "query vectors", self.name)
        except Exception as error:  # raised to the caller after the answers before it
            return _Failed(error)

    def group(self, first, next_now):
        """The arrays of one message: `first` and those next_now() has at once (it returns
        None when nothing is waiting), while they share first's dimension and fit the
        bounds. None when the stream must end (self.failure says whether in error)."""
        if first is _END:
            return None
        if isinstance(first, _Failed):
            self.failure = first.error
            return None
        arrays = [first]
        rows, size = first.shape[0], first.nbytes
        while rows < STREAM_GROUP_ROWS:
            item = next_now()
            if item is None:
                break
            if (item is _END or isinstance(item, _Failed) or item.shape[1] != first.shape[1]
                    or rows + item.shape[0] > STREAM_GROUP_ROWS
                    or size + item.nbytes > STREAM_GROUP_BYTES):
                self._carry = item
                break
            arrays.append(item)
            rows += item.shape[0]
            size += item.nbytes
        return arrays

    def take_carry(self):
        item, self._carry = self._carry, None
        return item

    def messages(self, next_item, next_now):
        """The request bytes of each message, grouped from next_item() (which waits for an
        item) and next_now() (which does not), until the stream must end."""
        while True:
            first = self.take_carry()
            arrays = self.group(next_item() if first is None else first, next_now)
            if arrays is None:
                return
            yield self.message(arrays)

    def message(self, arrays):
        """The request bytes of one message of `arrays`, remembered for its answer."""
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        call = _query_call("QueryStream", self.name, batch, self.k, self.ef, self.filter)
        self.sent.append((arrays, call.decode))
        return call.request

    def requests(self, queries):
        """The request messages of a sync iterable (gRPC's sending thread iterates them). A
        thread of our own reads the caller's iterable, so that grouping never waits for it."""
        waiting = queue.Queue(maxsize=2 * STREAM_GROUP_ROWS)
        stop = threading.Event()

        def put(item):
            """Queues `item` unless the stream stopped first; whether it was queued."""
            while not stop.is_set():
                try:
                    waiting.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read():
            try:
                for vector in queries:
                    item = self.checked(vector)
                    if not put(item) or isinstance(item, _Failed):
                        return
                put(_END)
            except Exception as error:
                put(_Failed(error))

        def next_now():
            try:
                return waiting.get_nowait()
            except queue.Empty:
                return None

        reader = threading.Thread(target=read, name="luxdb-query-stream", daemon=True)
        reader.start()
        try:
            yield from self.messages(waiting.get, next_now)
        finally:
            stop.set()

    async def async_requests(self, queries):
        """The request messages of an iterable or async iterable (grpc.aio iterates them on
        the event loop): a sync iterable's arrays are all there at once; an async one is read
        by a task of our own, so that grouping never waits for it."""
        if not hasattr(queries, "__aiter__"):
            iterator = iter(queries)

            def next_now():
                try:
                    return self.checked(next(iterator))
                except StopIteration:
                    return _END
                except Exception as error:
                    return _Failed(error)

            for request in self.messages(next_now, next_now):
                yield request
            return
        waiting = asyncio.Queue(maxsize=2 * STREAM_GROUP_ROWS)

        async def read():
            try:
                async for vector in queries:
                    item = self.checked(vector)
                    await waiting.put(item)
                    if isinstance(item, _Failed):
                        return
                await waiting.put(_END)
            except Exception as error:
                await waiting.put(_Failed(error))

        def next_now():
            try:
                return waiting.get_nowait()
            except asyncio.QueueEmpty:
                return None

        reader = asyncio.ensure_future(read())
        try:
            while True:
                first = self.take_carry()
                arrays = self.group(await waiting.get() if first is None else first, next_now)
                if arrays is None:
                    return
                yield self.message(arrays)
        finally:
            reader.cancel()

    def answers(self, data):
        """The (labels, distances) of each array of the oldest unanswered message."""
        arrays, decode = self.sent.popleft()
        labels, distances = decode(data)
        if len(arrays) == 1:
            return [(labels, distances)]
        out, row = [], 0
        for array in arrays:
            end = row + array.shape[0]
            out.append((labels[row:end], distances[row:end]))
            row = end
        return out

    def refused(self, error):
        """The calls that answer, one by one, the arrays of the message the server refused
        with `error` (a LuxDBError), if it held several and refused their content
        (INVALID_ARGUMENT): the error then concerns them together, and the first of these
        calls to fail names the array. Empty otherwise."""
        arrays, _ = self.sent[0] if self.sent else ((), None)
        if len(arrays) < 2 or error.code != grpc.StatusCode.INVALID_ARGUMENT:
            return []
        return [_query_call("QueryIndex", self.name, a, self.k, self.ef, self.filter)
                for a in arrays]


class Operations:
    """The LuxDB operations of the original Python client. Each builds its request and says
    how to read the reply; the client's `_call` performs it (and the async client awaits it).
    Errors the server answers raise luxdb.exceptions.LuxDBError subclasses."""

    def _call(self, call):
        raise NotImplementedError

    def index_exists(self, name: str) -> bool:
        """True if an index called `name` exists."""
        return self._call(_message_call("IndexExists", pb.IndexExistsRequest(name=name),
                                        lambda reply: reply.exists))

    def create_index(self, name: str, space: str, dim: int, shards: int = 1,
                     replicas: int = 1) -> bool:
        """Creates an index of `dim`-dimensional vectors compared by `space` ("l2", "ip" or
        "cosine"); returns True. It takes items once init_index has sized it. `shards` and
        `replicas` split it over the nodes of a cluster (README "Cluster mode"); a single
        server takes only 1 and 1."""
        request = pb.CreateIndexRequest(name=name, space=_space_value(space, name),
                                        dim=_whole(dim, "dim", 32),
                                        shards=_whole(shards, "shards", 32),
                                        replicas=_whole(replicas, "replicas", 32))
        return self._call(_message_call("CreateIndex", request, lambda reply: True))

    def init_index(self, name: str, max_elements: int, ef_construction: int = 200, M: int = 16,
                   random_seed: int = 100) -> None:
        """Sizes the index for `max_elements` items and fixes its HNSW graph parameters
        (see hnswlib's ALGO_PARAMS.md)."""
        request = pb.InitIndexRequest(
            name=name, max_elements=_whole(max_elements, "max_elements", 64),
            ef_construction=_whole(ef_construction, "ef_construction", 32),
            m=_whole(M, "M", 32), random_seed=_whole(random_seed, "random_seed", 64))
        return self._call(_message_call("InitIndex", request))

    def delete_index(self, name: str) -> None:
        """Deletes the index and all its items."""
        return self._call(_message_call("DeleteIndex", pb.DeleteIndexRequest(name=name)))

    def add_items(self, name: str, data: Vectors, ids: Ids,
                  attributes: Union[Attributes, Sequence[Attributes], None] = None) -> None:
        """Adds (or replaces) items: `data` is one vector or an (n, dim) array-like, `ids` one
        id or n ids. The batch is applied whole or not at all.

        `attributes`: None, or one dict per id (one dict for one id) of the item's attributes
        for query_index's `filter`, e.g. {"tenant": 7, "tags": ["a", "b"], "price": 9.5}.
        A value is a bool, an int (int64), a float (finite) or a str, or a list of str or of
        int. A replaced item gets these attributes (none with attributes=None). The client
        refuses other values (InvalidArgumentError naming the item and key); the server its
        limits (by default 32 keys per item, keys of 128 bytes, strings of 1,024, lists of
        64 values)."""
        vectors = _as_vectors(data, "vectors", name)
        labels = _as_ids(ids, name)
        if vectors.shape[0] != labels.size:
            raise InvalidArgumentError(
                f"{vectors.shape[0]} vectors but {labels.size} ids for index '{name}'",
                code=grpc.StatusCode.INVALID_ARGUMENT, name=name)
        fields = [_wire.packed_floats(2, vectors), _wire.packed_uint64s(3, labels)]
        if attributes is not None:
            fields.append(_attributes.attributes_field(4, attributes, labels, name))
        request = _wire.request(pb.AddItemsRequest(name=name), *fields)
        return self._call(Call(SERVICE_PATH + "AddItems", request, lambda data: None, name,
                               (labels.size, "vectors")))

    def set_attributes(self, name: str, ids: Ids,
                       attributes: Union[Attributes, Sequence[Attributes]]) -> int:
        """Replaces the attributes of live items, keeping their vectors: `attributes` holds
        one dict per id of `ids` (one dict for one id), as add_items takes them; {} removes an
        item's attributes. All or nothing; returns the number of items updated. Raises
        ItemDoesNotExistException naming the first id that is absent or deleted."""
        labels = _as_ids(ids, name)
        request = _wire.request(pb.SetAttributesRequest(name=name),
                                _wire.packed_uint64s(2, labels),
                                _attributes.attributes_field(3, attributes, labels, name))
        return self._call(Call(
            SERVICE_PATH + "SetAttributes", request,
            lambda data: pb.SetAttributesResponse.FromString(data).updated, name,
            (labels.size, "ids")))

    def set_ef(self, name: str, new_ef: int) -> None:
        """Sets the size of the candidate list queries use (at least k for good recall)."""
        request = pb.SetEfRequest(name=name, ef=_whole(new_ef, "ef", 32))
        return self._call(_message_call("SetEf", request))

    def get_ef(self, name: str) -> int:
        """The index's query-time ef."""
        return self._describe(name, lambda info: info.ef)

    def get_ef_construction(self, name: str) -> int:
        """The index's ef_construction."""
        return self._describe(name, lambda info: info.ef_construction)

    def query_index(self, name: str, vector: Vectors, k: int = 1, *,
                    filter: Optional[Filter] = None) -> Answer:
        """The k nearest items of each query vector: (labels, distances), numpy arrays of shape
        (n, k) (uint64 and float32), nearest first; one 1-D vector gives n = 1. A row with
        fewer than k matches is padded with label 2**64-1 and distance inf.

        `filter` restricts every query to the items that match it: a dict of up to four
        parts, each optional,
            {"must": [cond, ...], "must_not": [cond, ...], "should": [cond, ...],
             "ids": [id, ...]}
        An item matches when it passes every "must" condition, no "must_not" one, at least
        one "should" one when any are given, and is among "ids" when that is not empty. A
        condition tests one attribute key (see add_items); a list attribute passes when one
        of its values does:
            {"key": k, "equals": value}          ints and floats compare as numbers
            {"key": k, "any_of": [value, ...]}   equal to one of these
            {"key": k, "range": {"gte": 1, "lt": 5}}   gt, gte, lt, lte: at least one
            {"key": k, "exists": True}           has the key (False: has it not)
        A key no item has matches nothing. The client refuses unknown fields and values of
        other types (InvalidArgumentError); the server a malformed condition (an empty key,
        no test, a range without a bound), naming it as in "filter.must[1] ('price')".

        Above SPLIT_BYTES of vectors the queries go in calls of about that size, up to
        SPLIT_IN_FLIGHT at once, so that the server searches one part while the next
        arrives; the answer is the same, in the same order (`timeout` applies to each
        call)."""
        k = _whole(k, "k", 32)
        queries = _as_vectors(vector, "query vectors", name)
        query_filter = _filter_bytes(filter, name)
        if queries.nbytes <= 2 * SPLIT_BYTES:
            return self._call(_query_call("QueryIndex", name, queries, k, 0, query_filter))
        rows = max(1, SPLIT_BYTES // max(1, queries.shape[1] * 4))
        parts = [lambda start=start: _query_call("QueryIndex", name,
                                                 queries[start:start + rows], k, 0,
                                                 query_filter)
                 for start in range(0, queries.shape[0], rows)]
        return self._call_split(
            parts, lambda: _query_call("QueryIndex", name, queries, k, 0, query_filter),
            _join_answers)

    def delete_item(self, name: str, label: int) -> None:
        """Marks the item deleted: queries no longer return it. It stays in the graph as a
        tombstone, keeping its memory (not its capacity) until a compaction."""
        return self._call(self._delete_call(name, label, lambda deleted: None))

    def delete_items(self, name: str, labels: Ids) -> int:
        """Marks every item of `labels` deleted (all or none); returns how many were live."""
        return self._call(self._delete_call(name, labels, lambda deleted: deleted))

    def resize_index(self, name: str, new_size: int) -> None:
        """Changes max_elements (not below the items stored, deleted ones included)."""
        request = pb.ResizeIndexRequest(name=name,
                                        new_max_elements=_whole(new_size, "new_size", 64))
        return self._call(_message_call("ResizeIndex", request))

    def compact_index(self, name: str) -> Dict[str, Any]:
        """Rebuilds the index's graph without its tombstones (deleted items and the old vectors
        of replaced ones), freeing their memory, while queries and writes go on; returns once
        the new graph serves, as {"tombstones_removed", "live", "seconds"}. Joins a compaction
        the server already runs. The client's timeout applies: past it DEADLINE_EXCEEDED is
        raised but the compaction goes on (info()["compacting"] shows it). Raises NOT_FOUND for
        an unknown index, FAILED_PRECONDITION if it is not initialised, RESOURCE_EXHAUSTED if
        the server's memory budget cannot hold the second graph meanwhile."""
        return self._call(_message_call(
            "CompactIndex", pb.CompactIndexRequest(name=name),
            lambda reply: {"tombstones_removed": reply.tombstones_removed, "live": reply.live,
                           "seconds": reply.seconds}))

    def count(self, name: str) -> int:
        """The number of live items (added and not deleted)."""
        return self._describe(name, lambda info: info.element_count)

    def max_elements(self, name: str) -> int:
        """The index's capacity."""
        return self._describe(name, lambda info: info.max_elements)

    def info(self, name: str) -> Dict[str, Any]:
        """A dict with space, dim, M, ef_construction, ef, max_elements, element_count (live
        items), tombstones (deleted items and old vectors of replaced ones, still in the graph
        until a compaction; they do not count against max_elements), deleted_count (the same
        number, its older name), memory_bytes (reserved for the graph at full capacity,
        including a running compaction's second graph), compacting and initialized."""
        return self._describe(name, _info_dict)

    def get_indexes(self) -> List[str]:
        """The names of all indexes."""
        return self._call(_message_call("ListIndexes", pb.ListIndexesRequest(),
                                        lambda reply: [info.name for info in reply.indexes]))

    @overload
    def get_items(self, name: str, ids: Ids, with_attributes: Literal[False] = False
                  ) -> np.ndarray: ...

    @overload
    def get_items(self, name: str, ids: Ids, with_attributes: Literal[True]
                  ) -> Tuple[np.ndarray, List[Dict[str, Any]]]: ...

    @overload
    def get_items(self, name: str, ids: Ids, with_attributes: bool = False
                  ) -> Union[np.ndarray, Tuple[np.ndarray, List[Dict[str, Any]]]]: ...

    def get_items(self, name: str, ids: Ids, with_attributes: bool = False
                  ) -> Union[np.ndarray, Tuple[np.ndarray, List[Dict[str, Any]]]]:
        """The stored vectors of `ids` (one id or many): a float32 array of shape (n, dim).
        Cosine indexes return the normalised vectors. With with_attributes=True:
        (vectors, attributes), attributes being a list of one dict per id, as add_items
        takes them (a list of one value comes back as that value; {} for none).
        get_elements is the same method, under the original client's name."""
        labels = _as_ids(ids, name)
        request = _wire.request(pb.GetElementsRequest(name=name, with_attributes=with_attributes),
                                _wire.packed_uint64s(2, labels))

        def decode(data):
            fields = _wire.scan(data)
            vectors = _wire.float_field(fields, 1).reshape(labels.size,
                                                          _wire.int_field(fields, 2))
            if not with_attributes:
                return vectors
            # One parse of the reply: 1.5x faster than one per item.
            attributes = [_attributes.attributes_dict(item) for item in
                          pb.GetElementsResponse.FromString(data).attributes]
            if len(attributes) != labels.size:
                raise LuxDBError(
                    f"GetElements of index '{name}' returned the attributes of "
                    f"{len(attributes)} items for {labels.size} ids (a server from before "
                    f"attributes ignores with_attributes)", code=grpc.StatusCode.INTERNAL,
                    name=name)
            return vectors, attributes

        return self._call(Call(SERVICE_PATH + "GetElements", request, decode, name))

    # The original LuxDB client's name for get_items (its README calls get_elements).
    get_elements = get_items

    def get_ids(self, name: str) -> np.ndarray:
        """The ids of all live items, ascending: a uint64 array. Fetched a page at a time
        (get_ids_page), as many pages as it takes; the client's timeout applies to each."""
        return self._call_each(self._all_id_pages(name))

    def get_ids_page(self, name: str, start_after: Optional[int] = None,
                     limit: int = 0) -> Tuple[np.ndarray, Optional[int]]:
        """One page of the live ids: those above `start_after` (from the smallest if None),
        ascending, at most `limit` of them (0: as many as the server sends in one reply, up
        to 10,000,000; a page may hold fewer than `limit`). Returns (ids, next_start_after):
        a uint64 array, and the start_after of the next page, or None on the last page."""
        return self._call(self._id_page_call(name, start_after, limit))

    def backup(self, path: Union[str, os.PathLike[str]]) -> Dict[str, Any]:
        """Has the server write a consistent copy of its whole data directory to `path`, a new
        directory on the server's machine, while it keeps serving (relative paths need the
        server's --backup-dir). Returns {"path", "bytes", "seconds"}; start a server on the
        copy to restore it."""
        return self._call(_message_call(
            "Backup", pb.BackupRequest(path=str(path)),
            lambda reply: {"path": reply.path, "bytes": reply.bytes, "seconds": reply.seconds}))

    def _call_each(self, calls):
        """Performs each Call the generator `calls` yields, sending it the call's result;
        returns what the generator returns (the clients define how: blocking or awaited)."""
        raise NotImplementedError

    def _call_split(self, parts, whole, join):
        """join(results of the Calls parts() make, in order): the calls run up to
        SPLIT_IN_FLIGHT at once, each made just before it is sent. If one is refused as
        INVALID_ARGUMENT, the rest are cancelled and whole() is made and performed instead,
        so that the error names the value as one call of everything would (the clients
        define how: blocking or awaited)."""
        raise NotImplementedError

    @staticmethod
    def _id_page_call(name, start_after, limit):
        # limit is sent even when 0: its presence asks for a page rather than every id.
        request = pb.GetIdsRequest(name=name, limit=_whole(limit, "limit", 32))
        if start_after is not None:
            start_after = _whole(start_after, "start_after", 64)
            request.start_after = start_after

        def decode(data):
            fields = _wire.scan(data)
            ids = _wire.uint64_field(fields, 1)
            following = fields.get(2)
            next_start_after = _wire.int_field(fields, 2) if following else None
            if ids.size and start_after is not None and int(ids[0]) <= start_after:
                raise _malformed_page(name, f"its first id {int(ids[0])} is not above "
                                            f"start_after {start_after} (a server from before "
                                            f"paging ignores start_after)")
            if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
                raise _malformed_page(name, "its ids are not ascending")
            if next_start_after is not None and (not ids.size or next_start_after != int(ids[-1])):
                raise _malformed_page(name, f"next_start_after {next_start_after} is not its "
                                            f"last id")
            return ids, next_start_after

        return Call(SERVICE_PATH + "GetIds", request.SerializeToString(), decode, name)

    def _all_id_pages(self, name):
        """Generator for _call_each: the calls of every page of `name`'s ids, from the first;
        returns their ids joined. Each page starts above the last (decode checks it), so it
        ends."""
        pages = []
        start_after = None
        while True:
            ids, start_after = yield self._id_page_call(name, start_after, 0)
            pages.append(ids)
            if start_after is None:
                return pages[0] if len(pages) == 1 else np.concatenate(pages)

    def _describe(self, name, read):
        return self._call(_message_call("DescribeIndex", pb.DescribeIndexRequest(name=name),
                                        lambda reply: read(reply.info)))

    @staticmethod
    def _delete_call(name, labels, read):
        request = _wire.request(pb.DeleteItemsRequest(name=name),
                                _wire.packed_uint64s(2, _as_ids(labels, name)))
        return Call(SERVICE_PATH + "DeleteItems", request,
                    lambda data: read(pb.DeleteItemsResponse.FromString(data).deleted), name)


OPERATION_NAMES = tuple(name for name in vars(Operations) if not name.startswith("_"))


def _read_pem(value):
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def channel_credentials(tls_ca: Union[PemSource, bool, None] = None,
                        tls_cert: Optional[PemSource] = None,
                        tls_key: Optional[PemSource] = None
                        ) -> Optional[grpc.ChannelCredentials]:
    """grpc.ChannelCredentials for TLS, or None for a plaintext channel. Each argument is a
    PEM file path or PEM bytes; tls_ca=True trusts the system's roots."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return None
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together (mutual TLS)")
    return grpc.ssl_channel_credentials(
        root_certificates=None if tls_ca is True else _read_pem(tls_ca),
        private_key=_read_pem(tls_key), certificate_chain=_read_pem(tls_cert))


class ClientBase(Operations):
    """Connection settings, call tokens and channel of a client (see Client and SyncClient).

    host, port, address: the server, by luxdb.settings' rules: `host` and `port` (or
                   `address`, "host:port") win; what they leave out comes from LUXDB_ADDRESS,
                   else LUXDB_HOST / LUXDB_PORT, else 127.0.0.1:8484.
    secret, secret_file: the server's shared secret, or a file holding it; without either,
                   LUXDB_SECRET, else LUXDB_SECRET_FILE. The key is derived from it once,
                   here, with LUXDB_SALT and KDF_ITERATIONS from the environment unless
                   `salt` / `iterations` are given.
    insecure:      True for a server run with --insecure: without a secret, calls carry no
                   token (without a secret and without it, ValueError "no secret").
    tls_ca:        PEM file or bytes of the CA that signed the server's certificate (or True
                   for the system's roots): the channel then speaks TLS.
    tls_cert, tls_key: the client's certificate and key, for a server with --tls-client-ca.
    timeout:       seconds each call may take (None: no deadline).

    A bad or contradictory address or secret raises ValueError naming it, before any call.
    """

    def __init__(self, host: Optional[str] = None, port: Union[int, str, None] = None,
                 secret: Optional[settings.Secret] = settings.NOT_GIVEN, *, address: Optional[str] = None,
                 secret_file: Union[str, os.PathLike[str], None] = None,
                 insecure: bool = False, tls_ca: Union[PemSource, bool, None] = None,
                 tls_cert: Optional[PemSource] = None, tls_key: Optional[PemSource] = None,
                 timeout: Optional[float] = None, salt: Optional[str] = None,
                 iterations: Optional[int] = None,
                 channel_options: Sequence[Tuple[str, Any]] = ()) -> None:
        server, secret = settings.resolve(host, port, secret, address=address,
                                          secret_file=secret_file, insecure=insecure)
        self.host: str = server.host
        self.port: int = server.port
        self.timeout = timeout
        self._minter = None if secret is None else auth.Minter(
            auth.derive_key(secret, salt, iterations))
        self._credentials = channel_credentials(tls_ca, tls_cert, tls_key)
        self._channel_options = CHANNEL_OPTIONS + tuple(channel_options)
        self._channel: Any = None  # a grpc.Channel or grpc.aio.Channel once connected
        self._callables: Dict[str, Any] = {}

    @property
    def address(self) -> str:
        """"host:port" as gRPC takes it (IPv6 literals in brackets)."""
        return str(settings.Address(str(self.host), self.port))

    @property
    def connected(self) -> bool:
        """True between connect() and quit()."""
        return self._channel is not None

    def _open_channel(self, grpc_module):
        """A channel of `grpc_module` (grpc or grpc.aio) to the server."""
        if self._credentials is None:
            return grpc_module.insecure_channel(self.address, options=self._channel_options)
        return grpc_module.secure_channel(self.address, self._credentials,
                                          options=self._channel_options)

    def _callable(self, method, kind="unary_unary"):
        """The channel's bytes-in, bytes-out callable for `method` (`kind`: the channel's
        factory, unary_unary or stream_stream)."""
        if self._channel is None:
            raise LuxDBError("the client is not connected: call connect() first")
        callable_ = self._callables.get(method)
        if callable_ is None:
            callable_ = self._callables[method] = getattr(self._channel, kind)(method)
        return callable_

    def _call_arguments(self, call):
        metadata = None
        if self._minter is not None:
            metadata = (("authorization", "Bearer " + self._minter.mint(call.method)),)
        return {"timeout": self.timeout, "metadata": metadata}

    def _forget_channel(self):
        channel, self._channel, self._callables = self._channel, None, {}
        return channel

    @staticmethod
    def _error(error, call):
        """The LuxDBError for `error` (a grpc.RpcError) of `call`; a batch above the server's
        message cap gets a batch size that fits."""
        mapped = error_from_rpc(error, call.name)
        too_large = _TOO_LARGE.search(mapped.details)
        if mapped.code == grpc.StatusCode.RESOURCE_EXHAUSTED and too_large and call.batch:
            size, cap = int(too_large.group(1)), int(too_large.group(2))
            count, noun = call.batch
            fits = max(1, count * (cap - 1024) // size)
            mapped = LuxDBError(
                f"RESOURCE_EXHAUSTED: {count} {noun} for index '{call.name}' make a "
                f"{size}-byte request, above the server's {cap}-byte message cap "
                f"(--max-message-mb); send at most {fits} {noun} per call",
                code=mapped.code, details=mapped.details, name=call.name)
        return mapped

    @staticmethod
    def _connect_probe():
        return _message_call("IndexExists", pb.IndexExistsRequest(name=_CONNECT_PROBE_NAME))

    def _connect_error(self, error):
        """The error connect() raises for `error` (a LuxDBError of the probe call)."""
        if isinstance(error, AuthenticationError):
            message = (f"connection to LuxDB at {self.address} failed, make sure your secret "
                       f"is correct (and LUXDB_SALT / KDF_ITERATIONS match the server's): "
                       f"{error.details}")
        else:
            message = f"cannot connect to LuxDB at {self.address}: {error}"
        return type(error)(message, code=error.code, details=error.details)


def awaitable_operations(cls):
    """Class decorator: every operation of `cls` becomes a coroutine function (its `_call`
    returns an awaitable), keeping the operation's name, docstring and signature."""

    def make(operation):
        @functools.wraps(operation)
        async def method(self, *args, **kwargs):
            return await operation(self, *args, **kwargs)

        return method

    for name in OPERATION_NAMES:
        setattr(cls, name, make(getattr(Operations, name)))
    return cls

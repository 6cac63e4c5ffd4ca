"""Scenarios that both Python clients must pass, written once against awaitable methods:
test_client_async.py runs them on luxdb.client.Client, test_client_sync.py on
luxdb.sync_client.SyncClient seen through `Awaitable`.
"""

import math
import os
import shutil
import tempfile

import grpc
import numpy as np
import pytest

from luxdb.exceptions import (IndexAlreadyExistsException, IndexDoesNotExistException,
                              IndexNotInitializedException, InvalidArgumentError,
                              ItemDoesNotExistException, KNNBaseException, LuxDBError,
                              UnknownSpaceException)

MISSING_LABEL = 2**64 - 1


class Awaitable:
    """A SyncClient whose methods return awaitables, so the scenarios below drive it too."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        method = getattr(self._client, name)

        async def call(*args, **kwargs):
            return method(*args, **kwargs)

        return call


def assert_server_error(info, cls, code, *fragments):
    """`info` (a pytest.raises result) holds a `cls` with gRPC `code` whose message holds
    every fragment; every LuxDB error is a RuntimeError."""
    error = info.value
    assert type(error) is cls, f"{type(error).__name__}: {error}"
    assert isinstance(error, LuxDBError) and isinstance(error, KNNBaseException)
    assert isinstance(error, RuntimeError)
    assert error.code == code
    for fragment in fragments:
        assert fragment in error.details, error.details
        assert fragment in str(error)


async def index_lifecycle(db):
    assert await db.get_indexes() == []
    assert await db.index_exists("docs") is False
    assert await db.create_index("docs", "ip", 8) is True
    assert await db.index_exists("docs") is True
    assert await db.get_indexes() == ["docs"]
    before = await db.info("docs")
    assert (before["space"], before["dim"], before["initialized"]) == ("ip", 8, False)

    assert before["memory_bytes"] == 0 and before["tombstones"] == 0

    assert await db.init_index("docs", 50, ef_construction=40, M=6) is None
    info = await db.info("docs")
    assert info.pop("memory_bytes") > 0  # depends on the graph's layout
    assert info == {
        "space": "ip", "dim": 8, "M": 6, "ef_construction": 40, "ef": 10, "max_elements": 50,
        "element_count": 0, "deleted_count": 0, "tombstones": 0, "compacting": False,
        "initialized": True,
    }
    assert await db.get_ef_construction("docs") == 40
    assert await db.max_elements("docs") == 50
    assert await db.count("docs") == 0
    assert await db.get_ef("docs") == 10
    assert await db.set_ef("docs", 77) is None
    assert await db.get_ef("docs") == 77
    assert await db.resize_index("docs", 500) is None
    assert await db.max_elements("docs") == 500

    assert await db.create_index("other", "cosine", 3) is True
    await db.init_index("other", 10)  # ef_construction and M default to hnswlib's 200 and 16
    assert (await db.get_ef_construction("other"), (await db.info("other"))["M"]) == (200, 16)
    assert sorted(await db.get_indexes()) == ["docs", "other"]
    assert await db.delete_index("docs") is None
    assert await db.index_exists("docs") is False
    assert await db.get_indexes() == ["other"]


POINTS = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0], [0, 0, 0, 4]],
                  dtype=np.float32)


async def add_query_read_delete(db):
    await db.create_index("pts", "l2", 4)
    await db.init_index("pts", 10)
    assert await db.add_items("pts", POINTS[0], 10) is None  # one vector, one id
    await db.add_items("pts", POINTS[1:].tolist(), [11, 12, 13, 14])  # Python lists
    assert await db.count("pts") == 5

    labels, distances = await db.query_index("pts", [0.9, 0, 0, 0], 2)  # one 1-D vector
    assert labels.shape == distances.shape == (1, 2)
    assert labels.dtype == np.uint64 and distances.dtype == np.float32
    assert labels.tolist() == [[11, 10]]
    np.testing.assert_allclose(distances, [[0.01, 0.81]], rtol=1e-5)  # squared L2

    labels, distances = await db.query_index("pts", POINTS[[3, 4, 1]], k=1)  # many
    assert labels.shape == (3, 1) and labels.tolist() == [[13], [14], [11]]
    assert distances.tolist() == [[0.0], [0.0], [0.0]]

    # More neighbours than items: the row is padded.
    labels, distances = await db.query_index("pts", POINTS[0], k=7)
    assert sorted(labels[0, :5].tolist()) == [10, 11, 12, 13, 14]
    assert labels[0, 5:].tolist() == [MISSING_LABEL] * 2
    assert all(math.isinf(d) for d in distances[0, 5:])

    labels, distances = await db.query_index("pts", np.empty((0, 4)), 3)  # no queries
    assert labels.shape == distances.shape == (0, 3)
    assert await db.add_items("pts", np.empty((0, 4)), []) is None

    items = await db.get_items("pts", [14, 10])
    assert items.dtype == np.float32 and items.shape == (2, 4)
    np.testing.assert_array_equal(items, POINTS[[4, 0]])
    np.testing.assert_array_equal(await db.get_items("pts", np.uint64(12)), POINTS[[2]])
    assert (await db.get_items("pts", [])).shape == (0, 4)
    # The original client's name for get_items.
    np.testing.assert_array_equal(await db.get_elements("pts", [11, 13]), POINTS[[1, 3]])

    ids = await db.get_ids("pts")
    assert ids.dtype == np.uint64 and ids.tolist() == [10, 11, 12, 13, 14]

    assert await db.delete_item("pts", 12) is None
    assert await db.count("pts") == 4
    assert (await db.info("pts"))["deleted_count"] == 1
    assert (await db.get_ids("pts")).tolist() == [10, 11, 13, 14]
    ids, following = await db.get_ids_page("pts", limit=2)
    assert ids.dtype == np.uint64 and ids.tolist() == [10, 11] and following == 11
    ids, following = await db.get_ids_page("pts", following, 2)
    assert ids.tolist() == [13, 14] and following is None
    ids, following = await db.get_ids_page("pts", 0)
    assert ids.tolist() == [10, 11, 13, 14] and following is None
    ids, following = await db.get_ids_page("pts", start_after=2**64 - 1, limit=1)
    assert ids.tolist() == [] and following is None
    labels, _ = await db.query_index("pts", POINTS[2], 1)
    assert labels[0, 0] != 12

    # Adding an id again replaces its vector; ids up to 2**64 - 2 are allowed.
    await db.add_items("pts", [[5, 5, 5, 5], [1, 1, 1, 1]], np.array([11, 2**64 - 2], np.uint64))
    np.testing.assert_array_equal(await db.get_items("pts", [11, 2**64 - 2]),
                                  [[5, 5, 5, 5], [1, 1, 1, 1]])
    assert await db.count("pts") == 5
    assert await db.delete_items("pts", [10, 13]) == 2


async def compact_removes_tombstones(db):
    await db.create_index("c", "l2", 4)
    await db.init_index("c", 100)
    vectors = np.random.default_rng(5).random((40, 4), dtype=np.float32)
    await db.add_items("c", vectors, range(40))
    assert await db.delete_items("c", [1, 2, 3, 30]) == 4
    await db.add_items("c", [[9, 9, 9, 9]], [7])  # a replaced vector is a tombstone too
    info = await db.info("c")
    assert (info["tombstones"], info["deleted_count"], info["element_count"]) == (5, 5, 36)
    assert info["memory_bytes"] > 0 and info["compacting"] is False

    compacted = await db.compact_index("c")
    assert compacted["tombstones_removed"] == 5 and compacted["live"] == 36
    assert compacted["seconds"] >= 0
    after = await db.info("c")
    assert (after["tombstones"], after["deleted_count"], after["element_count"]) == (0, 0, 36)
    assert after["memory_bytes"] == info["memory_bytes"] and after["compacting"] is False
    ids = (await db.get_ids("c")).tolist()
    assert ids == [i for i in range(40) if i not in (1, 2, 3, 30)]
    np.testing.assert_array_equal(await db.get_items("c", [0, 7, 39]),
                                  [vectors[0], [9, 9, 9, 9], vectors[39]])
    labels, distances = await db.query_index("c", [9, 9, 9, 9], 1)
    assert labels.tolist() == [[7]] and distances.tolist() == [[0.0]]
    assert (await db.compact_index("c"))["tombstones_removed"] == 0

    code = grpc.StatusCode
    with pytest.raises(IndexDoesNotExistException) as info:
        await db.compact_index("nope")
    assert_server_error(info, IndexDoesNotExistException, code.NOT_FOUND,
                        "index 'nope' does not exist")
    await db.create_index("raw", "l2", 4)
    with pytest.raises(IndexNotInitializedException) as info:
        await db.compact_index("raw")
    assert_server_error(info, IndexNotInitializedException, code.FAILED_PRECONDITION,
                        "'raw'", "not initialised")


async def cosine_and_inner_product(db):
    await db.create_index("cos", "cosine", 2)
    await db.init_index("cos", 5)
    await db.add_items("cos", [[3, 4]], [1])
    np.testing.assert_allclose(await db.get_items("cos", [1]), [[0.6, 0.8]], rtol=1e-6)
    _, distances = await db.query_index("cos", [2, 0], 1)
    np.testing.assert_allclose(distances, [[0.4]], rtol=1e-5)  # 1 - cos

    await db.create_index("dot", "IP", 2)  # spaces are case-insensitive
    await db.init_index("dot", 5)
    await db.add_items("dot", [[1, 2]], [5])
    labels, distances = await db.query_index("dot", [[3, 1]], 1)
    assert labels.tolist() == [[5]] and distances.tolist() == [[-4.0]]  # 1 - dot
    assert (await db.info("dot"))["space"] == "ip"


async def errors_map_to_exception_classes(db):
    code = grpc.StatusCode
    assert await db.create_index("e", "l2", 3) is True
    with pytest.raises(IndexAlreadyExistsException) as info:
        await db.create_index("e", "cosine", 5)
    assert_server_error(info, IndexAlreadyExistsException, code.ALREADY_EXISTS, "'e'")
    assert info.value.name == "e"

    with pytest.raises(UnknownSpaceException) as info:  # refused before any call
        await db.create_index("f", "euclid", 3)
    assert_server_error(info, UnknownSpaceException, code.INVALID_ARGUMENT, "'euclid'")
    assert info.value.space == "euclid" and isinstance(info.value, ValueError)
    assert await db.index_exists("f") is False

    with pytest.raises(IndexNotInitializedException) as info:
        await db.add_items("e", [[1, 2, 3]], [1])
    assert_server_error(info, IndexNotInitializedException, code.FAILED_PRECONDITION,
                        "'e'", "not initialised")
    with pytest.raises(IndexNotInitializedException):
        await db.query_index("e", [1, 2, 3], 1)

    await db.init_index("e", 2)
    with pytest.raises(LuxDBError) as info:
        await db.init_index("e", 2)
    assert_server_error(info, LuxDBError, code.FAILED_PRECONDITION, "already initialised")

    for call, args in [("count", ()), ("info", ()), ("get_ids", ()), ("delete_index", ()),
                       ("init_index", (5,)), ("set_ef", (5,)), ("get_items", ([1],)),
                       ("add_items", ([1, 2, 3], 1)), ("query_index", ([1, 2, 3], 1)),
                       ("delete_item", (1,)), ("resize_index", (9,)), ("get_ef", ()),
                       ("compact_index", ())]:
        with pytest.raises(IndexDoesNotExistException) as info:
            await getattr(db, call)("nope", *args)
        assert_server_error(info, IndexDoesNotExistException, code.NOT_FOUND,
                            "index 'nope' does not exist")
        assert info.value.name == "nope"

    await db.add_items("e", [[1, 2, 3]], [1])
    with pytest.raises(ItemDoesNotExistException) as info:
        await db.delete_item("e", 99)
    assert_server_error(info, ItemDoesNotExistException, code.NOT_FOUND, "id 99")
    with pytest.raises(ItemDoesNotExistException) as info:
        await db.get_items("e", [1, 98])
    assert_server_error(info, ItemDoesNotExistException, code.NOT_FOUND, "id 98")

    invalid = code.INVALID_ARGUMENT
    with pytest.raises(InvalidArgumentError) as info:  # the server checks the dimension
        await db.add_items("e", [[1, 2]], [2])
    assert_server_error(info, InvalidArgumentError, invalid, "'e'", "dimension 3")
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidArgumentError) as info:  # the client checks ids against rows
        await db.add_items("e", [[1, 2, 3], [4, 5, 6]], [2])
    assert_server_error(info, InvalidArgumentError, invalid, "2 vectors but 1 ids")
    with pytest.raises(InvalidArgumentError) as info:
        await db.add_items("e", [[1, 2, math.nan]], [2])
    assert_server_error(info, InvalidArgumentError, invalid, "nan", "component 2")
    with pytest.raises(InvalidArgumentError) as info:
        await db.add_items("e", [[1, 2, 3]], [-4])
    assert_server_error(info, InvalidArgumentError, invalid, "-4")
    with pytest.raises(InvalidArgumentError) as info:
        await db.query_index("e", [1, 2, 3], 0)
    assert_server_error(info, InvalidArgumentError, invalid, "k must be between 1 and")
    with pytest.raises(InvalidArgumentError) as info:  # 2 rows of 6 read as 4 of dimension 3
        await db.query_index("e", np.zeros((2, 6)), 1)
    assert_server_error(info, InvalidArgumentError, invalid, "dimension 6", "'e'")
    with pytest.raises(InvalidArgumentError) as info:
        await db.index_exists("no spaces")
    assert_server_error(info, InvalidArgumentError, invalid, "index name")
    with pytest.raises(InvalidArgumentError) as info:
        await db.init_index("e", 10, M=-1)
    assert_server_error(info, InvalidArgumentError, invalid, "M must be")

    await db.add_items("e", [[4, 5, 6]], [2])
    with pytest.raises(LuxDBError) as info:
        await db.add_items("e", [[7, 8, 9]], [3])
    assert_server_error(info, LuxDBError, code.RESOURCE_EXHAUSTED, "'e' is full")
    await db.resize_index("e", 3)
    await db.add_items("e", [[7, 8, 9]], [3])
    with pytest.raises(LuxDBError) as info:
        await db.resize_index("e", 1)
    assert_server_error(info, LuxDBError, code.FAILED_PRECONDITION, "'e'")
    assert await db.count("e") == 3  # refused writes changed nothing


async def batch_of_10000(db):
    rng = np.random.default_rng(2024)
    data = rng.random((10_000, 96), dtype=np.float32)
    ids = np.arange(10_000, dtype=np.uint64) * 7 + 3
    await db.create_index("big", "l2", 96)
    await db.init_index("big", 10_000, ef_construction=100, M=16)
    await db.add_items("big", data, ids)  # one call
    assert await db.count("big") == 10_000
    await db.set_ef("big", 64)
    # 3.7 MiB of queries: sent in parts, three at a time, answered in order as one call.
    labels, distances = await db.query_index("big", data, k=2)
    assert labels.shape == distances.shape == (10_000, 2)
    part_labels, part_distances = await db.query_index("big", data[7000:7100], k=2)
    np.testing.assert_array_equal(labels[7000:7100], part_labels)
    np.testing.assert_array_equal(distances[7000:7100], part_distances)
    # A refused value is named by its row in the whole call, not in its part.
    bad = data.copy()
    bad[7000, 5] = np.nan
    with pytest.raises(InvalidArgumentError) as info:
        await db.query_index("big", bad, k=2)
    assert "query vector 7000 " in info.value.details
    assert labels.dtype == np.uint64 and distances.dtype == np.float32
    assert (labels[:, 0] == ids).mean() > 0.99  # each vector finds itself (hnswlib: 0.997)
    assert (distances[:, 0] <= distances[:, 1]).all()
    np.testing.assert_array_equal(await db.get_items("big", ids[::-1]), data[::-1])
    np.testing.assert_array_equal(await db.get_ids("big"), ids)


async def backup_writes_a_copy(db):
    await db.create_index("kept", "l2", 3)
    await db.init_index("kept", 10)
    await db.add_items("kept", np.eye(3, dtype=np.float32), [1, 2, 3])
    target = os.path.join(tempfile.mkdtemp(prefix="luxdb-backup-"), "copy")
    info = await db.backup(target)
    assert info["path"] == target and info["bytes"] > 0 and info["seconds"] >= 0
    assert os.path.isdir(os.path.join(target, "db"))
    assert os.path.isdir(os.path.join(target, "graphs"))
    with pytest.raises(LuxDBError) as refused:
        await db.backup(target)
    assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS and target in str(refused.value)
    shutil.rmtree(os.path.dirname(target))


# A server run with --max-message-mb 1 sends at most this many ids in one reply.
IDS_PER_REPLY_AT_1_MIB = 104_851


async def ids_in_pages(db):
    """Against a server run with --max-message-mb 1: get_ids pages through 210,000 ids (three
    replies); get_ids_page fetches any one page."""
    count = 210_000
    await db.create_index("many", "l2", 1)
    await db.init_index("many", count, ef_construction=8, M=4)
    added = np.arange(count, dtype=np.uint64) * 3 + 1  # 1, 4, 7, ...
    for first in range(0, count, 50_000):
        part = added[first:first + 50_000]
        await db.add_items("many", part.astype(np.float32).reshape(-1, 1), part)
    deleted = [1, 4000, 300_001, int(added[-1])]
    assert await db.delete_items("many", deleted) == 4
    live = added[~np.isin(added, np.array(deleted, dtype=np.uint64))]

    ids = await db.get_ids("many")
    assert ids.dtype == np.uint64
    np.testing.assert_array_equal(ids, live)

    fit = IDS_PER_REPLY_AT_1_MIB
    ids, following = await db.get_ids_page("many")
    np.testing.assert_array_equal(ids, live[:fit])
    assert following == int(live[fit - 1])
    ids, following = await db.get_ids_page("many", following, 3)
    assert ids.tolist() == live[fit:fit + 3].tolist() and following == int(live[fit + 2])
    ids, following = await db.get_ids_page("many", int(live[-2]), 1000)
    assert ids.tolist() == [int(live[-1])] and following is None

    code = grpc.StatusCode
    with pytest.raises(LuxDBError) as info:
        await db.get_ids_page("many", limit=10_000_001)
    assert_server_error(info, InvalidArgumentError, code.INVALID_ARGUMENT, "'many'", "10000001",
                        "at most 10000000")
    with pytest.raises(InvalidArgumentError, match="start_after must be between 0 and"):
        await db.get_ids_page("many", -1)
    with pytest.raises(InvalidArgumentError, match="limit must be between 0 and 4294967295"):
        await db.get_ids_page("many", limit=2**32)
    with pytest.raises(LuxDBError) as info:
        await db.get_ids_page("nope", 5)
    assert_server_error(info, IndexDoesNotExistException, code.NOT_FOUND, "'nope'")


SCENARIOS = [index_lifecycle, add_query_read_delete, cosine_and_inner_product,
             compact_removes_tombstones, backup_writes_a_copy, errors_map_to_exception_classes,
             batch_of_10000]


async def query_stream_answers_in_order(db, collect):
    """query_stream against query_index. `collect(name, queries, k, ef=0)` runs one
    query_stream to its end: (its answers, the exception it raised or None)."""
    rng = np.random.default_rng(16)
    data = rng.random((700, 8), dtype=np.float32)
    await db.create_index("s", "l2", 8)
    await db.init_index("s", 700)
    await db.add_items("s", data, np.arange(700))
    # One vector per message, with a batch of 600 (4,800 floats, answered off gRPC's thread)
    # every 7th; handed over lazily, as a generator.
    shapes = [data[i:i + 600] if i % 7 == 6 else data[i] for i in range(40)]
    answers, error = await collect("s", (q for q in shapes), 3)
    assert error is None
    assert len(answers) == len(shapes)
    for i, (query, (labels, distances)) in enumerate(zip(shapes, answers)):
        want_labels, want_distances = await db.query_index("s", query, k=3)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(distances, want_distances)
        assert labels[0, 0] == i
    assert await collect("s", [], 3) == ([], None)

    # The server's refusal of the third message ends the stream after two answers, with the
    # error query_index raises for the same query.
    with pytest.raises(InvalidArgumentError) as unary:
        await db.query_index("s", data[0, :5], k=3)
    answers, error = await collect("s", [data[0], data[1], data[0, :5], data[2]], 3)
    assert len(answers) == 2
    assert type(error) is InvalidArgumentError and error.details == unary.value.details
    # Arrays sent together in one message (the client groups those waiting): the refused one
    # is still named as query_index names it, after the answers before it.
    nan = data[5].copy()
    nan[3] = np.nan
    with pytest.raises(InvalidArgumentError) as unary:
        await db.query_index("s", nan, k=3)
    answers, error = await collect("s", [data[0], data[1], nan, data[2]], 3)
    assert [labels[0, 0] for labels, _ in answers] == [0, 1]
    assert type(error) is InvalidArgumentError and error.details == unary.value.details
    # So does an array the client cannot send.
    answers, error = await collect("s", [data[0], data[1], "not numbers", data[2]], 3)
    assert len(answers) == 2
    assert type(error) is InvalidArgumentError and "not an array of numbers" in str(error)
    answers, error = await collect("nowhere", [data[0]], 3)
    assert answers == [] and type(error) is IndexDoesNotExistException
    assert "'nowhere'" in str(error)
    answers, error = await collect("s", [data[0]], 3, ef=-1)
    assert answers == [] and type(error) is InvalidArgumentError and "ef" in str(error)

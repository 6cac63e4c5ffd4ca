"""Attributes and filtered search, written once against awaitable methods like client_cases:
test_client_async.py runs them on luxdb.client.Client, test_client_sync.py on SyncClient.

The index "f" holds 20 items on a line, item i at (i, 0), so that a query at the origin finds
the matching items in ascending id order and the expected answers read as lists of ids.
"""

import math

import grpc
import numpy as np
import pytest

from client_cases import MISSING_LABEL, assert_server_error
from luxdb.exceptions import InvalidArgumentError, ItemDoesNotExistException

COUNT = 20


def item_attributes(i):
    """The attributes "f" gives item i: every kind, lists, and a key only half the items
    have."""
    attributes = {
        "tenant": i % 3,
        "tags": ["even" if i % 2 == 0 else "odd"] + (["five"] if i % 5 == 0 else []),
        "price": i * 1.5,
        "new": i >= 15,
        "nums": [i, i + 100],
    }
    if i < 10:
        attributes["name"] = f"item{i}"
    return attributes


async def make_index(db, name="f"):
    await db.create_index(name, "l2", 2)
    await db.init_index(name, 100)
    points = np.array([[i, 0] for i in range(COUNT)], dtype=np.float32)
    await db.add_items(name, points, np.arange(COUNT),
                       [item_attributes(i) for i in range(COUNT)])


async def matches(db, query_filter, k=COUNT, name="f"):
    """The ids query_index finds at the origin under `query_filter`, nearest first; checks
    that the rest of the row is padding."""
    labels, distances = await db.query_index(name, [0, 0], k, filter=query_filter)
    assert labels.shape == distances.shape == (1, k)
    found = [int(label) for label in labels[0] if label != MISSING_LABEL]
    assert labels[0, len(found):].tolist() == [MISSING_LABEL] * (k - len(found))
    assert all(math.isinf(d) for d in distances[0, len(found):])
    np.testing.assert_allclose(distances[0, :len(found)], [i * i for i in found])
    return found


def as_returned(attributes):
    """`attributes` as get_items returns them: a list of one value comes back as the value."""
    return {key: value[0] if isinstance(value, list) and len(value) == 1 else value
            for key, value in attributes.items()}


def ids_where(predicate):
    return [i for i in range(COUNT) if predicate(i)]


async def attributes_round_trip(db):
    await make_index(db)
    vectors, attributes = await db.get_items("f", [3, 10, 15], with_attributes=True)
    np.testing.assert_array_equal(vectors, [[3, 0], [10, 0], [15, 0]])
    assert attributes == [as_returned(item_attributes(i)) for i in (3, 10, 15)]
    assert attributes[0] == {"name": "item3", "new": False, "nums": [3, 103], "price": 4.5,
                             "tags": "odd", "tenant": 0}
    assert attributes[1]["tags"] == ["even", "five"]
    assert [list(a) for a in attributes] == [sorted(a) for a in attributes]  # keys ascending
    assert type(attributes[0]["tenant"]) is int and type(attributes[0]["new"]) is bool
    # The old form returns the vectors alone.
    np.testing.assert_array_equal(await db.get_items("f", [3]), [[3, 0]])
    vectors, attributes = await db.get_items("f", [], with_attributes=True)
    assert vectors.shape == (0, 2) and attributes == []

    # One vector, one id, one dict; a list of one value comes back as that value.
    await db.add_items("f", [50, 0], 50, {"tags": ["solo"], "tenant": -7})
    assert (await db.get_items("f", 50, with_attributes=True))[1] == [
        {"tags": "solo", "tenant": -7}]
    # numpy scalars and arrays count as their Python kinds.
    await db.add_items("f", [[51, 0]], [51], [{"i": np.int64(2**63 - 1), "d": np.float32(0.5),
                                               "b": np.bool_(True), "l": np.array([1, 2])}])
    assert (await db.get_items("f", [51], with_attributes=True))[1] == [
        {"b": True, "d": 0.5, "i": 2**63 - 1, "l": [1, 2]}]

    # Replacing an item replaces its attributes, with none when the call has none.
    await db.add_items("f", [[3, 0]], [3], [{"tenant": 2}])
    await db.add_items("f", [[10, 0]], [10])
    _, attributes = await db.get_items("f", [3, 10], with_attributes=True)
    assert attributes == [{"tenant": 2}, {}]

    # set_attributes replaces them and keeps the vectors; {} removes them.
    assert await db.set_attributes("f", [3, 4], [{"tenant": 1, "tags": ["x"]}, {}]) == 2
    assert await db.set_attributes("f", 5, {"tenant": 9}) == 1
    vectors, attributes = await db.get_items("f", [3, 4, 5, 6], with_attributes=True)
    np.testing.assert_array_equal(vectors, [[3, 0], [4, 0], [5, 0], [6, 0]])
    assert attributes == [{"tags": "x", "tenant": 1}, {}, {"tenant": 9},
                          as_returned(item_attributes(6))]

    # All or nothing: an absent or deleted id is NOT_FOUND and changes nothing.
    code = grpc.StatusCode
    with pytest.raises(ItemDoesNotExistException) as info:
        await db.set_attributes("f", [6, 99], [{"tenant": 0}, {"tenant": 0}])
    assert_server_error(info, ItemDoesNotExistException, code.NOT_FOUND, "99")
    await db.delete_items("f", [7])
    with pytest.raises(ItemDoesNotExistException) as info:
        await db.set_attributes("f", [6, 7], [{"tenant": 0}, {"tenant": 0}])
    assert_server_error(info, ItemDoesNotExistException, code.NOT_FOUND, "7")
    with pytest.raises(InvalidArgumentError) as info:
        await db.set_attributes("f", [6, 6], [{}, {}])
    assert_server_error(info, InvalidArgumentError, code.INVALID_ARGUMENT, "id 6 appears twice")
    with pytest.raises(InvalidArgumentError) as info:  # the client counts
        await db.set_attributes("f", [6, 8], [{}])
    assert_server_error(info, InvalidArgumentError, code.INVALID_ARGUMENT, "2 ids but 1")
    assert (await db.get_items("f", [6], with_attributes=True))[1] == [
        as_returned(item_attributes(6))]
    assert await db.set_attributes("f", [], []) == 0


async def each_condition_kind(db):
    await make_index(db)
    # equals: int and float compare as numbers; str and bool only with their own kind.
    tenant_1 = ids_where(lambda i: i % 3 == 1)
    assert await matches(db, {"must": [{"key": "tenant", "equals": 1}]}) == tenant_1
    assert await matches(db, {"must": [{"key": "tenant", "equals": 1.0}]}) == tenant_1
    assert await matches(db, {"must": [{"key": "price", "equals": 3}]}) == [2]
    assert await matches(db, {"must": [{"key": "price", "equals": 3.0}]}) == [2]
    assert await matches(db, {"must": [{"key": "tenant", "equals": "1"}]}) == []
    assert await matches(db, {"must": [{"key": "new", "equals": True}]}) == list(range(15, 20))
    assert await matches(db, {"must": [{"key": "new", "equals": 1}]}) == []
    assert await matches(db, {"must": [{"key": "name", "equals": "item4"}]}) == [4]
    # A list attribute matches when one of its values does.
    assert await matches(db, {"must": [{"key": "tags", "equals": "five"}]}) == [0, 5, 10, 15]
    assert await matches(db, {"must": [{"key": "nums", "equals": 104}]}) == [4]

    assert await matches(db, {"must": [{"key": "tenant", "any_of": [0, 2]}]}) == \
        ids_where(lambda i: i % 3 != 1)
    assert await matches(db, {"must": [{"key": "tags", "any_of": ["five", "odd"]}]}) == \
        ids_where(lambda i: i % 2 == 1 or i % 5 == 0)
    assert await matches(db, {"must": [{"key": "nums", "any_of": (105, 3)}]}) == [3, 5]
    assert await matches(db, {"must": [{"key": "tenant", "any_of": []}]}) == []

    assert await matches(db, {"must": [{"key": "price", "range": {"gte": 3, "lt": 9}}]}) == \
        [2, 3, 4, 5]
    assert await matches(db, {"must": [{"key": "price", "range": {"gt": 3, "lte": 9}}]}) == \
        [3, 4, 5, 6]
    assert await matches(db, {"must": [{"key": "nums", "range": {"gte": 118}}]}) == [18, 19]
    assert await matches(db, {"must": [{"key": "tenant", "range": {"lt": 0.5}}]}) == \
        ids_where(lambda i: i % 3 == 0)
    assert await matches(db, {"must": [{"key": "name", "range": {"gte": 0}}]}) == []

    assert await matches(db, {"must": [{"key": "name", "exists": True}]}) == list(range(10))
    assert await matches(db, {"must": [{"key": "name", "exists": False}]}) == \
        list(range(10, 20))

    # A key no item has matches nothing, but every item lacks it.
    assert await matches(db, {"must": [{"key": "colour", "equals": "red"}]}) == []
    assert await matches(db, {"must": [{"key": "colour", "exists": False}]}) == \
        list(range(COUNT))


async def combined_conditions(db):
    await make_index(db)
    assert await matches(db, {"must_not": [{"key": "new", "equals": True}]}) == \
        list(range(15))
    assert await matches(db, {"should": [{"key": "tenant", "equals": 0},
                                         {"key": "tags", "equals": "five"}]}) == \
        ids_where(lambda i: i % 3 == 0 or i % 5 == 0)
    everything = {
        "must": [{"key": "price", "range": {"lt": 20}}, {"key": "nums", "exists": True}],
        "must_not": [{"key": "tags", "equals": "odd"}],
        "should": [{"key": "tenant", "equals": 0}, {"key": "name", "equals": "item8"}],
    }
    assert await matches(db, everything) == [0, 6, 8, 12]
    assert await matches(db, {"ids": [3, 4, 17, 99]}) == [3, 4, 17]
    assert await matches(db, {"ids": np.array([3, 4, 17], dtype=np.uint64),
                              "must": [{"key": "tenant", "equals": 1}]}) == [4]
    assert await matches(db, {**everything, "ids": [6, 7, 8]}) == [6, 8]
    # Empty parts restrict nothing.
    assert await matches(db, {}) == list(range(COUNT))
    assert await matches(db, {"must": [], "ids": []}) == list(range(COUNT))

    # k below the matches takes the nearest; every query vector of the call is filtered.
    assert await matches(db, {"must": [{"key": "tenant", "equals": 1}]}, k=3) == [1, 4, 7]
    labels, distances = await db.query_index(
        "f", [[0, 0], [19, 0], [11.2, 0]], 2, filter={"must": [{"key": "tenant", "equals": 1}]})
    assert labels.tolist() == [[1, 4], [19, 16], [10, 13]]
    np.testing.assert_allclose(distances, [[1, 16], [0, 9], [1.44, 3.24]], rtol=1e-5)
    # Old call forms are unchanged: no filter, k positional.
    labels, _ = await db.query_index("f", [0, 0], 3)
    assert labels.tolist() == [[0, 1, 2]]


async def writes_change_what_matches(db):
    await make_index(db)
    tenant_1 = {"must": [{"key": "tenant", "equals": 1}]}
    # A deleted item is never returned, whatever names it.
    await db.delete_items("f", [4])
    assert await matches(db, tenant_1) == [1, 7, 10, 13, 16, 19]
    assert await matches(db, {"ids": [4]}) == []
    assert await matches(db, {"must": [{"key": "nums", "equals": 104}]}) == []
    # A replaced item matches by its new attributes only; one replaced without any matches
    # no test of a key.
    await db.add_items("f", [[7, 0], [1, 0]], [7, 1], [{"tenant": 2}, {}])
    await db.add_items("f", [[10, 0]], [10])
    assert await matches(db, tenant_1) == [13, 16, 19]
    assert 7 in await matches(db, {"must": [{"key": "tenant", "equals": 2}]})
    assert 1 in await matches(db, {"must": [{"key": "name", "exists": False}]})
    assert 10 not in await matches(db, {"must": [{"key": "tags", "exists": True}]})
    # set_attributes moves an item between filters at once.
    await db.set_attributes("f", [13, 19], [{"tenant": 0}, {}])
    assert await matches(db, tenant_1) == [16]
    assert 13 in await matches(db, {"must": [{"key": "tenant", "equals": 0}]})
    # A deleted id added again starts with the attributes it is added with.
    await db.add_items("f", [[4, 0]], [4], [{"tenant": 1}])
    assert await matches(db, tenant_1) == [4, 16]


async def bad_attributes_are_refused_by_the_client(db):
    await db.create_index("b", "l2", 2)
    await db.init_index("b", 10)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for value, shown in [(None, "None"), ({"x": 1}, "{'x': 1}"), ([1.5, 2.5], "[1.5, 2.5]"),
                         ([1, "a"], "[1, 'a']"), ([], "[]"), ([True], "[True]"),
                         (2**63, str(2**63)), (b"raw", "b'raw'")]:
        with pytest.raises(InvalidArgumentError) as info:
            await db.add_items("b", [[0, 0], [1, 1]], [1, 2], [{"ok": 1}, {"k": 1, "bad": value}])
        assert_server_error(info, InvalidArgumentError, invalid, "attributes[1] (id 2)",
                            "index 'b'", "key 'bad'", shown)
    with pytest.raises(InvalidArgumentError) as info:
        await db.add_items("b", [[0, 0], [1, 1]], [1, 2], [{}])
    assert_server_error(info, InvalidArgumentError, invalid, "2 ids but 1 attributes")
    with pytest.raises(InvalidArgumentError) as info:
        await db.add_items("b", [[0, 0]], [1], [None])
    assert_server_error(info, InvalidArgumentError, invalid, "attributes[0] (id 1)", "dict")
    with pytest.raises(InvalidArgumentError) as info:
        await db.add_items("b", [[0, 0]], [1], [{7: "seven"}])
    assert_server_error(info, InvalidArgumentError, invalid, "key 7", "keys are str")
    with pytest.raises(InvalidArgumentError) as info:
        await db.set_attributes("b", [1], [{"when": object}])
    assert_server_error(info, InvalidArgumentError, invalid, "attributes[0] (id 1)",
                        "key 'when'")
    assert await db.count("b") == 0  # nothing was sent


async def bad_filters_are_refused(db):
    await make_index(db)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    # What the client cannot encode, it refuses, naming it.
    for query_filter, fragments in [
        ({"musts": []}, ["unknown field(s) 'musts'"]),
        ({"must": {"key": "a", "equals": 1}}, ["filter.must", "list of conditions"]),
        ({"should": [{"key": "a", "equals": 1, "exist": True}]},
         ["filter.should[0] ('a')", "unknown field(s) 'exist'"]),
        ({"must": [{"key": "a", "equals": 1}, {"key": "b", "equals": 1, "any_of": [1]}]},
         ["filter.must[1] ('b')", "'equals' and 'any_of'"]),
        ({"must_not": [{"key": "a", "equals": [1, 2]}]},
         ["filter.must_not[0] ('a')", "equals [1, 2]"]),
        ({"must": [{"key": "a", "any_of": "ab"}]}, ["filter.must[0] ('a')", "any_of 'ab'"]),
        ({"must": [{"key": "a", "range": {"above": 1}}]}, ["filter.must[0] ('a')", "'above'"]),
        ({"must": [{"key": "a", "exists": "yes"}]}, ["filter.must[0] ('a')", "exists 'yes'"]),
        ({"must": [{"equals": 1}]}, ["filter.must[0]", "'key'"]),
        ({"ids": [-1]}, ["-1"]),
    ]:
        with pytest.raises(InvalidArgumentError) as info:
            await db.query_index("f", [0, 0], 1, filter=query_filter)
        assert_server_error(info, InvalidArgumentError, invalid, "'f'", *fragments)
    # What the client can encode, the server judges, naming the condition.
    for query_filter, fragment in [
        ({"must": [{"key": "tenant", "equals": 0}, {"key": "price", "range": {}}]},
         "filter.must[1] ('price')"),
        ({"should": [{"key": "price", "range": {"gt": math.nan}}]},
         "filter.should[0] ('price')"),
        ({"must_not": [{"key": "tenant"}]}, "filter.must_not[0] ('tenant')"),
        ({"must": [{"key": "tenant", "equals": 1}, {"key": "", "exists": True}]},
         "filter.must[1]"),
    ]:
        with pytest.raises(InvalidArgumentError) as info:
            await db.query_index("f", [0, 0], 1, filter=query_filter)
        assert_server_error(info, InvalidArgumentError, invalid, fragment)


async def attributes_over_the_servers_limits_are_refused(db):
    await db.create_index("l", "l2", 2)
    await db.init_index("l", 10)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for attributes, fragments in [
        ({"price": math.nan}, ["'price'", "finite"]),
        ({"price": -math.inf}, ["'price'", "finite"]),
        ({"": 1}, ["empty key"]),
        ({"long": ["x"] * 65}, ["'long'", "--max-attribute-values"]),
        ({"text": "x" * 1025}, ["'text'", "--max-attribute-string-bytes"]),
        ({"k" * 129: 1}, ["'kkk", "--max-attribute-key-bytes"]),
        ({f"key{j}": j for j in range(33)}, ["33 attributes", "--max-attribute-keys"]),
    ]:
        with pytest.raises(InvalidArgumentError) as info:
            await db.add_items("l", [[0, 0], [1, 1]], [1, 2], [{}, attributes])
        assert_server_error(info, InvalidArgumentError, invalid, "item 2 of index 'l'",
                            *fragments)
    assert await db.count("l") == 0
    await db.add_items("l", [[0, 0]], [1], [{"long": ["x"] * 64, "text": "x" * 1024}])
    assert await db.count("l") == 1


async def filter_goes_with_every_part_of_a_split_query(db):
    rng = np.random.default_rng(17)
    data = rng.random((10_000, 96), dtype=np.float32)
    await db.create_index("split", "l2", 96)
    await db.init_index("split", 10_000, ef_construction=64, M=8)
    await db.add_items("split", data, np.arange(10_000),
                       [{"group": i % 100} for i in range(10_000)])
    group_7 = {"must": [{"key": "group", "equals": 7}]}
    # 3.7 MiB of queries: sent in parts, each with the filter.
    labels, distances = await db.query_index("split", data, 3, filter=group_7)
    assert labels.shape == (10_000, 3)
    assert (labels % 100 == 7).all()
    assert (labels[7::100, 0] == np.arange(7, 10_000, 100)).all()
    part_labels, part_distances = await db.query_index("split", data[5000:5100], 3,
                                                       filter=group_7)
    np.testing.assert_array_equal(labels[5000:5100], part_labels)
    np.testing.assert_array_equal(distances[5000:5100], part_distances)


FILTER_SCENARIOS = [attributes_round_trip, each_condition_kind, combined_conditions,
                    writes_change_what_matches, bad_attributes_are_refused_by_the_client,
                    bad_filters_are_refused, attributes_over_the_servers_limits_are_refused,
                    filter_goes_with_every_part_of_a_split_query]


async def filtered_query_stream(db, collect):
    """query_stream with a filter answers as query_index with that filter. `collect` as in
    client_cases.query_stream_answers_in_order, passing keyword options on."""
    await make_index(db)
    tenant_1 = {"must": [{"key": "tenant", "equals": 1}]}
    queries = [[0, 0], [[19, 0], [11.2, 0]], [5, 0]]
    answers, error = await collect("f", queries, 2, filter=tenant_1)
    assert error is None
    assert [labels.tolist() for labels, _ in answers] == [[[1, 4]], [[19, 16], [10, 13]],
                                                         [[4, 7]]]
    for query, (labels, distances) in zip(queries, answers):
        want_labels, want_distances = await db.query_index("f", query, 2, filter=tenant_1)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(distances, want_distances)
    answers, error = await collect("f", queries, 2, filter={"ids": [3]})
    assert error is None and [labels[:, 0].tolist() for labels, _ in answers] == [[3], [3, 3],
                                                                                  [3]]
    answers, error = await collect("f", queries, 2,
                                   filter={"must": [{"key": "price", "range": {}}]})
    assert answers == [] and type(error) is InvalidArgumentError
    assert "filter.must[0] ('price')" in str(error)

"""Filtered search finds the true nearest matching items: recall@10 of filters from 0.5% to
90% of the items against exact answers, through the Python client and the real server (the
server plans some as an exact scan of the matching items and some as a filtered graph
search; either way the answer must be as good as an unfiltered query's)."""

import numpy as np
import pytest

import luxdb.sync_client

COUNT = 20_000
DIM = 24
QUERIES = 200
K = 10
MIN_RECALL = 0.95


def exact_nearest(data, queries, mask, k):
    """The ids of each query's k nearest items among those in `mask`, exactly (float64)."""
    data64 = data.astype(np.float64)
    queries64 = queries.astype(np.float64)
    distances = ((queries64 ** 2).sum(1)[:, None] + (data64 ** 2).sum(1)[None, :]
                 - 2 * queries64 @ data64.T)
    distances[:, ~mask] = np.inf
    return np.argsort(distances, axis=1)[:, :k]


def recall(found, truth):
    return np.mean([len(set(f.tolist()) & set(t.tolist())) / truth.shape[1]
                    for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(3)
    return rng.random((COUNT, DIM), dtype=np.float32), rng.random((QUERIES, DIM),
                                                                  dtype=np.float32)


def test_filtered_queries_find_the_nearest_matching_items(client_args, vectors):
    data, queries = vectors
    ids = np.arange(COUNT)
    tenant = ids % 20
    filters = [
        ("even (50%)", {"must": [{"key": "even", "equals": True}]}, ids % 2 == 0),
        ("one tenant (5%)", {"must": [{"key": "tenant", "equals": 3}]}, tenant == 3),
        ("any_of (20%)", {"must": [{"key": "tenant", "any_of": [1, 2, 3, 4]}]},
         np.isin(tenant, [1, 2, 3, 4])),
        ("must_not (90%)", {"must_not": [{"key": "tenant", "any_of": [1, 2]}]},
         ~np.isin(tenant, [1, 2])),
        ("range (0.5%)", {"must": [{"key": "x", "range": {"lt": 100}}]}, ids < 100),
        ("should (10%)", {"should": [{"key": "tenant", "equals": 5},
                                     {"key": "tenant", "equals": 6}]}, np.isin(tenant, [5, 6])),
        ("ids and must (2%)", {"ids": ids[::50], "must": [{"key": "even", "equals": True}]},
         (ids % 50 == 0)),
    ]
    with luxdb.sync_client.connect(*client_args) as client:
        client.create_index("r", "l2", DIM)
        client.init_index("r", COUNT, ef_construction=100, M=16)
        client.add_items("r", data, ids, [{"tenant": int(t), "even": bool(i % 2 == 0),
                                           "x": float(i)} for i, t in enumerate(tenant)])
        client.set_ef("r", 64)
        labels, _ = client.query_index("r", queries, K)
        unfiltered = recall(labels, exact_nearest(data, queries, np.ones(COUNT, bool), K))
        assert unfiltered >= MIN_RECALL
        for name, query_filter, mask in filters:
            labels, distances = client.query_index("r", queries, K, filter=query_filter)
            assert mask[labels.astype(np.int64)].all(), f"{name}: an item that does not match"
            assert (np.diff(distances, axis=1) >= 0).all(), name
            found = recall(labels, exact_nearest(data, queries, mask, K))
            assert found >= min(MIN_RECALL, unfiltered - 0.01), f"{name}: recall {found}"

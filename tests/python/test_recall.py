"""Acceptance: on Fashion-MNIST (60,000 train vectors, 1,000 test queries, l2, M=16,
ef_construction=200, ef=100, k=10) recall@10 through the server is within 0.005 of hnswlib
used in-process with the same parameters."""

import gzip
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import hnswlib
import numpy as np
import pytest

from luxdb.v1 import luxdb_pb2
from luxdb_testing import add_items_request, query

DATASET_DIR = "/usr/share/datasets/fashion-mnist"
TRAIN = os.path.join(DATASET_DIR, "train-images-idx3-ubyte.gz")
TEST = os.path.join(DATASET_DIR, "t10k-images-idx3-ubyte.gz")
QUERIES = 1000
M = 16
EF_CONSTRUCTION = 200
EF = 100
K = 10
BATCH = 10_000
MAX_RECALL_GAP = 0.005
MIN_RECALL = 0.95


def load_idx_images(path):
    """IDX3 file (big-endian magic 0x00000803, count, rows, cols, then uint8 pixels) as an
    (count, rows*cols) float32 array of the raw pixel values 0..255."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x00000803, f"{path}: magic {magic:#x} is not an IDX3 image file"
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    assert pixels.size == count * rows * cols, f"{path}: {pixels.size} pixels for {count} images"
    return pixels.reshape(count, rows * cols).astype(np.float32)


def exact_kth_distances(train, queries, k):
    """Squared L2 distance of each query's k-th true nearest neighbour, exactly.

    Debian's numpy uses the reference BLAS (a 60,000 x 1,000 x 784 matrix product takes
    ~30 s here), so candidates come from hnswlib's brute-force index (float32, 2 threads)
    and are re-ranked in float64: the pixels are integers, so those distances are exact.
    Float32 rounding (a few units in ~10^6) cannot push a true top-k item out of the top 2k.
    """
    brute_force = hnswlib.BFIndex(space="l2", dim=train.shape[1])
    brute_force.init_index(max_elements=len(train))
    brute_force.add_items(train, np.arange(len(train), dtype=np.uint64))
    chunks = range(0, len(queries), 100)
    with ThreadPoolExecutor(2) as pool:  # knn_query releases the GIL
        candidates = np.concatenate(list(pool.map(
            lambda start: brute_force.knn_query(queries[start:start + 100], k=2 * k)[0],
            chunks))).astype(np.int64)
    diff = train[candidates].astype(np.float64) - queries.astype(np.float64)[:, None, :]
    return np.sort(np.einsum("qcj,qcj->qc", diff, diff), axis=1)[:, k - 1]


def recall(train, queries, ids, kth):
    """Fraction of returned ids whose true distance is within the k-th true distance (ties
    with the k-th neighbour count as hits, so equal-distance duplicates are not misses)."""
    hits = 0
    for q, row, limit in zip(queries.astype(np.float64), ids, kth):
        row = row[row != np.iinfo(np.uint64).max].astype(np.int64)
        diff = train[row].astype(np.float64) - q
        hits += int(np.count_nonzero(np.einsum("ij,ij->i", diff, diff) <= limit))
    return hits / ids.size


@pytest.fixture(scope="module")
def fashion_mnist():
    missing = [p for p in (TRAIN, TEST) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"Fashion-MNIST not installed (package dataset-fashion-mnist): missing "
                    f"{', '.join(missing)}")
    train = load_idx_images(TRAIN)
    test = load_idx_images(TEST)[:QUERIES]
    assert train.shape == (60_000, 784) and test.shape == (QUERIES, 784)
    return train, test, exact_kth_distances(train, test, K)


def in_process_recall(train, queries, kth):
    index = hnswlib.Index(space="l2", dim=train.shape[1])
    index.init_index(max_elements=len(train), ef_construction=EF_CONSTRUCTION, M=M)
    start = time.monotonic()
    index.add_items(train, np.arange(len(train), dtype=np.uint64), num_threads=2)
    build_s = time.monotonic() - start
    index.set_ef(EF)
    start = time.monotonic()
    ids, _ = index.knn_query(queries, k=K, num_threads=2)
    query_s = time.monotonic() - start
    return recall(train, queries, ids.astype(np.uint64), kth), build_s, query_s


def server_recall(stub, train, queries, kth):
    name = "fashion-mnist"
    stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name=name, space=luxdb_pb2.L2,
                                                  dim=train.shape[1]), timeout=30)
    stub.InitIndex(luxdb_pb2.InitIndexRequest(name=name, max_elements=len(train),
                                              ef_construction=EF_CONSTRUCTION, m=M), timeout=30)
    start = time.monotonic()
    for first in range(0, len(train), BATCH):
        ids = np.arange(first, min(first + BATCH, len(train)), dtype=np.uint64)
        response = stub.AddItems(add_items_request(name, train[ids], ids), timeout=600)
        assert response.added == len(ids)
    build_s = time.monotonic() - start
    stub.SetEf(luxdb_pb2.SetEfRequest(name=name, ef=EF), timeout=30)
    info = stub.DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name), timeout=30).info
    assert (info.element_count, info.ef, info.m, info.ef_construction) == (
        len(train), EF, M, EF_CONSTRUCTION)
    start = time.monotonic()
    ids, distances = query(stub, name, queries, k=K, timeout=600)
    query_s = time.monotonic() - start
    assert np.all(np.diff(distances, axis=1) >= 0), "results are not nearest first"
    return recall(train, queries, ids, kth), build_s, query_s


def test_recall_matches_hnswlib_in_process(fashion_mnist, stub, capsys):
    train, queries, kth = fashion_mnist
    server, server_build_s, server_query_s = server_recall(stub, train, queries, kth)
    local, local_build_s, local_query_s = in_process_recall(train, queries, kth)
    with capsys.disabled():  # past pytest's capture, so CTest's log shows the figures
        print(f"\n[recall] Fashion-MNIST {len(train)} x {train.shape[1]}, {len(queries)} "
              f"queries, l2, M={M}, ef_construction={EF_CONSTRUCTION}, ef={EF}, k={K}\n"
              f"[recall] server:     recall@{K} {server:.4f}  build {server_build_s:.1f} s  "
              f"query {server_query_s:.2f} s ({len(queries) / server_query_s:.0f} q/s)\n"
              f"[recall] in-process: recall@{K} {local:.4f}  build {local_build_s:.1f} s  "
              f"query {local_query_s:.2f} s ({len(queries) / local_query_s:.0f} q/s)",
              flush=True)
    assert server >= MIN_RECALL, f"server recall@{K} {server:.4f} is below {MIN_RECALL}"
    assert abs(server - local) <= MAX_RECALL_GAP, (
        f"server recall@{K} {server:.4f} differs from in-process hnswlib's {local:.4f} by more "
        f"than {MAX_RECALL_GAP}")

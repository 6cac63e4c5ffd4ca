"""Acceptance: importing a python3-hnswlib file gives identical query answers to that file
loaded in Python (hnswlib 0.6.2), for l2, ip and cosine, also after a restart."""

import dataclasses
import os
import re

import grpc
import hnswlib
import numpy as np
import pytest

from luxdb.v1 import luxdb_pb2
from luxdb_testing import LuxServer, query, run_import

DIM = 32
COUNT = 3000
CAPACITY = 4000  # max_elements of the file: above COUNT, so it is not the element count
M = 16
EF_CONSTRUCTION = 100
EF = 50
K = 10
QUERIES = 200
DELETED = 25
SPACES = ["l2", "ip", "cosine"]
PROTO_SPACE = {"l2": luxdb_pb2.L2, "ip": luxdb_pb2.IP, "cosine": luxdb_pb2.COSINE}
BIG_LABELS = [2**40 + 7, 2**63 + 11]


@dataclasses.dataclass
class HnswFile:
    """A saved hnswlib index and what Python's hnswlib answers from that file."""

    space: str
    path: str
    live_labels: np.ndarray  # ascending
    deleted_labels: np.ndarray
    live_vectors: np.ndarray  # rows in live_labels order, as hnswlib stores them
    queries: np.ndarray
    ids: np.ndarray  # knn_query(queries, k=K) after set_ef(EF)
    distances: np.ndarray

    @property
    def name(self):
        return f"imported-{self.space}"


def build_hnsw_file(space, directory, seed):
    rng = np.random.default_rng(seed)
    # Non-contiguous labels, two of them far beyond 32 bits.
    labels = rng.choice(10**9, size=COUNT - len(BIG_LABELS), replace=False).astype(np.uint64)
    labels = np.concatenate([labels * 3 + 1, np.array(BIG_LABELS, dtype=np.uint64)])
    rng.shuffle(labels)
    data = rng.standard_normal((COUNT, DIM), dtype=np.float32)
    index = hnswlib.Index(space=space, dim=DIM)
    index.init_index(max_elements=CAPACITY, ef_construction=EF_CONSTRUCTION, M=M, random_seed=7)
    index.add_items(data, labels, num_threads=2)
    deleted = np.concatenate([rng.choice(labels[labels < 2**32], DELETED - 1, replace=False),
                              np.array([BIG_LABELS[1]], dtype=np.uint64)])
    for label in deleted:
        index.mark_deleted(int(label))
    path = os.path.join(directory, f"{space}.hnsw")
    index.save_index(path)
    del index

    loaded = hnswlib.Index(space=space, dim=DIM)
    loaded.load_index(path)
    loaded.set_ef(EF)
    queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    ids, distances = loaded.knn_query(queries, k=K, num_threads=1)
    assert not np.isin(ids, deleted).any(), "hnswlib itself returned deleted labels"
    live = np.sort(np.setdiff1d(labels, deleted))
    vectors = np.array(loaded.get_items(live.tolist()), dtype=np.float32)
    return HnswFile(space=space, path=path, live_labels=live, deleted_labels=np.sort(deleted),
                    live_vectors=vectors, queries=queries, ids=ids.astype(np.uint64),
                    distances=distances.astype(np.float32))


@pytest.fixture(scope="module")
def hnsw_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hnswlib-files")
    return {space: build_hnsw_file(space, str(directory), seed)
            for seed, space in enumerate(SPACES, start=11)}


def import_ok(binary, data_dir, f):
    result = run_import(binary, data_dir, f.path, f.name, f.space, DIM)
    assert result.returncode == 0, (
        f"import of {f.path} as {f.name} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def imported_server(luxdb_server_bin, hnsw_files, tmp_path_factory):
    """A server over a data directory into which every file of hnsw_files was imported."""
    directory = tmp_path_factory.mktemp("imported")
    data_dir = directory / "data"
    for f in hnsw_files.values():
        import_ok(luxdb_server_bin, data_dir, f)
    server = LuxServer(luxdb_server_bin, data_dir, log_dir=directory)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        server.abandon()


def assert_same_answers(stub, f):
    ids, distances = query(stub, f.name, f.queries, k=K, ef=EF)
    rows = np.flatnonzero((ids != f.ids).any(axis=1))
    assert rows.size == 0, (
        f"{f.space}: {rows.size} of {QUERIES} query rows differ from hnswlib's; first, row "
        f"{rows[0]}:\n  server  {ids[rows[0]].tolist()} {distances[rows[0]].tolist()}\n"
        f"  hnswlib {f.ids[rows[0]].tolist()} {f.distances[rows[0]].tolist()}")
    np.testing.assert_allclose(distances, f.distances, rtol=1e-5, atol=1e-6,
                               err_msg=f"{f.space}: distances differ from hnswlib's")


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


@pytest.mark.parametrize("space", SPACES)
def test_query_answers_match_hnswlib(imported_server, hnsw_files, space):
    assert_same_answers(imported_server.stub, hnsw_files[space])


@pytest.mark.parametrize("space", SPACES)
def test_describe_reports_file_parameters(imported_server, hnsw_files, space):
    f = hnsw_files[space]
    info = imported_server.stub.DescribeIndex(
        luxdb_pb2.DescribeIndexRequest(name=f.name), timeout=30).info
    assert info.name == f.name
    assert info.space == PROTO_SPACE[space]
    assert info.dim == DIM
    assert info.initialized
    assert info.element_count == COUNT - DELETED
    assert info.deleted_count == DELETED
    assert info.m == M
    assert info.ef_construction == EF_CONSTRUCTION
    assert info.max_elements == CAPACITY


@pytest.mark.parametrize("space", SPACES)
def test_get_ids_lists_live_labels(imported_server, hnsw_files, space):
    f = hnsw_files[space]
    response = imported_server.stub.GetIds(luxdb_pb2.GetIdsRequest(name=f.name), timeout=30)
    assert np.array_equal(np.array(response.ids, dtype=np.uint64), f.live_labels)


@pytest.mark.parametrize("space", SPACES)
def test_get_elements_returns_stored_vectors(imported_server, hnsw_files, space):
    f = hnsw_files[space]
    response = imported_server.stub.GetElements(
        luxdb_pb2.GetElementsRequest(name=f.name, ids=f.live_labels.tolist()), timeout=60)
    assert response.dim == DIM
    vectors = np.array(response.vectors, dtype=np.float32).reshape(-1, DIM)
    # For cosine, both hold hnswlib's normalised vectors, bit for bit.
    assert np.array_equal(vectors, f.live_vectors)
    if space == "cosine":
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    big = f.live_labels == BIG_LABELS[0]
    assert big.any()
    response = imported_server.stub.GetElements(
        luxdb_pb2.GetElementsRequest(name=f.name, ids=[BIG_LABELS[0]]), timeout=30)
    assert np.array_equal(np.array(response.vectors, dtype=np.float32), f.live_vectors[big][0])


@pytest.mark.parametrize("space", SPACES)
def test_deleted_labels_are_not_found(imported_server, hnsw_files, space):
    f = hnsw_files[space]
    for label in (int(f.deleted_labels[0]), BIG_LABELS[1]):
        error = rpc_error(imported_server.stub.GetElements,
                          luxdb_pb2.GetElementsRequest(name=f.name, ids=[label]))
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
        assert str(label) in error.details()


def test_answers_identical_after_restart(imported_server, hnsw_files):
    imported_server.restart()
    assert "rebuil" not in imported_server.stderr_text().lower(), (
        "the imported graphs were rebuilt on restart instead of loaded from their snapshots")
    for f in hnsw_files.values():
        assert_same_answers(imported_server.stub, f)
    listed = imported_server.stub.ListIndexes(luxdb_pb2.ListIndexesRequest(), timeout=30)
    assert sorted(i.name for i in listed.indexes) == sorted(f.name for f in hnsw_files.values())


def list_index_names(luxdb_server_bin, data_dir, log_dir):
    server = LuxServer(luxdb_server_bin, data_dir, log_dir=log_dir)
    try:
        server.start()
        names = [i.name for i in server.stub.ListIndexes(luxdb_pb2.ListIndexesRequest(),
                                                          timeout=30).indexes]
        server.stop()
    finally:
        server.abandon()
    return names


@pytest.mark.parametrize("wrong_dim", [DIM - 1, DIM * 2])
def test_wrong_dimension_fails_and_leaves_nothing(luxdb_server_bin, hnsw_files, tmp_path,
                                                  wrong_dim):
    f = hnsw_files["l2"]
    result = run_import(luxdb_server_bin, tmp_path / "data", f.path, "wrong-dim", "l2",
                        wrong_dim)
    assert result.returncode > 0, f"exit {result.returncode}\n{result.stderr}"
    # The message names both dimensions (paths are blanked: they may contain digits).
    message = result.stderr.replace(f.path, "FILE").replace(str(tmp_path), "DIR")
    assert "dimension" in message, message
    assert re.search(rf"\b{DIM}\b", message) and re.search(rf"\b{wrong_dim}\b", message), message
    assert list_index_names(luxdb_server_bin, tmp_path / "data", tmp_path) == []


@pytest.mark.parametrize("keep", ["header", "half", "all_but_one_byte"])
def test_truncated_file_fails_cleanly(luxdb_server_bin, hnsw_files, tmp_path, keep):
    f = hnsw_files["ip"]
    with open(f.path, "rb") as source:
        content = source.read()
    size = {"header": 40, "half": len(content) // 2, "all_but_one_byte": len(content) - 1}[keep]
    truncated = tmp_path / "truncated.hnsw"
    truncated.write_bytes(content[:size])
    result = run_import(luxdb_server_bin, tmp_path / "data", truncated, "truncated", "ip", DIM)
    # A positive exit code: an error reported, not a crash (a signal gives a negative one).
    assert result.returncode > 0, f"exit {result.returncode}\n{result.stderr}"
    assert "import failed" in result.stderr and str(truncated) in result.stderr, result.stderr
    assert list_index_names(luxdb_server_bin, tmp_path / "data", tmp_path) == []


def test_import_into_existing_name_fails(luxdb_server_bin, hnsw_files, tmp_path):
    data_dir = tmp_path / "data"
    first = hnsw_files["cosine"]
    import_ok(luxdb_server_bin, data_dir, first)
    other = hnsw_files["l2"]
    result = run_import(luxdb_server_bin, data_dir, other.path, first.name, "l2", DIM)
    assert result.returncode > 0, f"exit {result.returncode}\n{result.stderr}"
    assert "already exists" in result.stderr and first.name in result.stderr, result.stderr
    # The existing index is untouched: still the cosine file's answers.
    server = LuxServer(luxdb_server_bin, data_dir, log_dir=tmp_path)
    try:
        server.start()
        assert [i.name for i in server.stub.ListIndexes(luxdb_pb2.ListIndexesRequest(),
                                                         timeout=30).indexes] == [first.name]
        assert_same_answers(server.stub, first)
        server.stop()
    finally:
        server.abandon()

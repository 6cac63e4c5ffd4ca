"""Cluster mode (README "Cluster mode") on localhost: Debian's etcd and three luxdb-server
nodes on free ports. An index of 3 shards x 2 replicas gets Fashion-MNIST through every node in
turn; any node answers queries, descriptions, id listings and element reads, and the recall@10
at ef 40 is held against one server with the same parameters."""

import contextlib
import json
import os
import shutil
import socket
import signal
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

from luxdb.v1 import luxdb_pb2
from luxdb_testing import LuxServer, add_items_request, free_port, query
from test_recall import (EF_CONSTRUCTION, M, TEST, TRAIN, exact_kth_distances, load_idx_images,
                         recall)

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
NODES = 3
SHARDS = 3
REPLICAS = 2
EF = 40
K = 10
QUERIES = 1000
BATCH = 5_000
MAX_RECALL_GAP = 0.005
ETCD_START_TIMEOUT_S = 20


class Etcd:
    """A one-member etcd on 127.0.0.1 with free client and peer ports, in `data_dir`."""

    def __init__(self, data_dir, log_path):
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process = None

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"

    def start(self):
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [ETCD, "--name", "luxdb-test", "--data-dir", self.data_dir,
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"luxdb-test={peer}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + ETCD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"etcd exited while starting:\n{self.log()}"
            try:
                socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"etcd not listening on {self.endpoint} within {ETCD_START_TIMEOUT_S} s:\n"
                    f"{self.log()}")

    def get_json(self, key):
        """The value of `key` as JSON (etcdctl), or None if there is no such key."""
        out = subprocess.run([ETCDCTL, "--endpoints", self.endpoint, "get", key,
                              "--print-value-only"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()
        return json.loads(out) if out else None

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    if not os.path.exists(ETCD):
        pytest.fail(f"{ETCD} is missing: install Debian's etcd-server (scripts/install-deps.sh)")
    base = tmp_path_factory.mktemp("etcd")
    server = Etcd(base / "data", base / "etcd.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(etcd, luxdb_server_bin, tmp_path_factory):
    """NODES luxdb-server nodes of one cluster, started and serving; stopped (SIGTERM, exit 0)
    at teardown."""
    base = tmp_path_factory.mktemp("cluster")
    nodes = [LuxServer(luxdb_server_bin, base / f"node{i}", log_dir=base,
                       extra_args=["--cluster-etcd", etcd.endpoint, "--node-id", f"node{i}"])
             for i in range(NODES)]
    try:
        for node in nodes:
            node.start()
        yield nodes
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.abandon()


@pytest.fixture(scope="module")
def fashion():
    missing = [p for p in (TRAIN, TEST) if not os.path.exists(p)]
    if missing:
        pytest.fail(f"Fashion-MNIST not installed (package dataset-fashion-mnist): missing "
                    f"{', '.join(missing)}")
    train = load_idx_images(TRAIN)
    queries = load_idx_images(TEST)[:QUERIES]
    return train, queries, exact_kth_distances(train, queries, K)


def build(stubs, name, train, **create):
    """Creates and fills `name` through `stubs` in turn (the first creates it); returns the
    seconds the adds took."""
    stubs[0].CreateIndex(luxdb_pb2.CreateIndexRequest(
        name=name, space=luxdb_pb2.L2, dim=train.shape[1], **create), timeout=30)
    stubs[-1].InitIndex(luxdb_pb2.InitIndexRequest(
        name=name, max_elements=len(train), ef_construction=EF_CONSTRUCTION, m=M), timeout=60)
    start = time.monotonic()
    for turn, first in enumerate(range(0, len(train), BATCH)):
        ids = np.arange(first, min(first + BATCH, len(train)), dtype=np.uint64)
        response = stubs[turn % len(stubs)].AddItems(add_items_request(name, train[ids], ids),
                                                     timeout=600)
        assert response.added == len(ids)
    seconds = time.monotonic() - start
    stubs[0].SetEf(luxdb_pb2.SetEfRequest(name=name, ef=EF), timeout=30)
    return seconds


def test_sharded_index_answers_through_every_node_with_single_server_recall(
        cluster, fashion, luxdb_server, capsys):
    train, queries, kth = fashion
    stubs = [node.stub for node in cluster]
    name = "fashion"
    cluster_build_s = build(stubs, name, train, shards=SHARDS, replicas=REPLICAS)
    single_build_s = build([luxdb_server.stub], name, train)

    for stub in stubs:
        info = stub.DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name), timeout=30).info
        assert (info.name, info.element_count, info.shards, info.replicas, info.ef, info.m) == (
            name, len(train), SHARDS, REPLICAS, EF, M)
        assert info.max_elements >= len(train)
        assert stub.IndexExists(luxdb_pb2.IndexExistsRequest(name=name), timeout=30).exists
        listed = stub.ListIndexes(luxdb_pb2.ListIndexesRequest(), timeout=30).indexes
        assert [i.name for i in listed] == [name]

    results = {}
    for label, stub in (("cluster", stubs[1]), ("single", luxdb_server.stub)):
        start = time.monotonic()
        ids, distances = query(stub, name, queries, k=K, timeout=600)
        seconds = time.monotonic() - start
        assert np.all(np.diff(distances, axis=1) >= 0), f"{label}: not nearest first"
        results[label] = (recall(train, queries, ids, kth), seconds)
    # Every node gives the same answer (each shard's replicas hold the same items).
    ids_a, _ = query(stubs[0], name, queries[:50], k=K)
    ids_b, _ = query(stubs[2], name, queries[:50], k=K)
    assert np.mean(ids_a == ids_b) > 0.98

    with capsys.disabled():
        print(f"\n[cluster] Fashion-MNIST {len(train)} x {train.shape[1]}, {len(queries)} queries,"
              f" l2, M={M}, ef_construction={EF_CONSTRUCTION}, ef={EF}, k={K}; {NODES} nodes on "
              f"this machine's cores\n"
              f"[cluster] {SHARDS} shards x {REPLICAS} replicas: recall@{K} "
              f"{results['cluster'][0]:.4f}  add {cluster_build_s:.1f} s  query "
              f"{results['cluster'][1]:.2f} s\n"
              f"[cluster] one server:            recall@{K} {results['single'][0]:.4f}  add "
              f"{single_build_s:.1f} s  query {results['single'][1]:.2f} s", flush=True)
    # Sharding searches each shard's smaller graph with the full ef, so its recall may be higher;
    # it must not be lower.
    assert results["cluster"][0] >= results["single"][0] - MAX_RECALL_GAP

    # Elements come back in the order asked, from whichever shards hold them.
    wanted = np.array([59_999, 0, 31_337, 7, 12_345], dtype=np.uint64)
    got = stubs[2].GetElements(luxdb_pb2.GetElementsRequest(name=name, ids=wanted.tolist()),
                               timeout=30)
    assert got.dim == train.shape[1]
    np.testing.assert_array_equal(np.array(got.vectors, dtype=np.float32).reshape(len(wanted), -1),
                                  train[wanted.astype(np.int64)])

    # Ids page through all shards in ascending order.
    seen = []
    start_after = None
    while True:
        request = luxdb_pb2.GetIdsRequest(name=name, limit=25_000)
        if start_after is not None:
            request.start_after = start_after
        page = stubs[0].GetIds(request, timeout=60)
        seen.extend(page.ids)
        if not page.HasField("next_start_after"):
            break
        start_after = page.next_start_after
    assert seen == list(range(len(train)))

    # A delete through one node is seen by queries through another.
    gone = np.arange(0, 100, dtype=np.uint64)
    deleted = stubs[2].DeleteItems(luxdb_pb2.DeleteItemsRequest(name=name, ids=gone.tolist()),
                                   timeout=60)
    assert deleted.deleted == len(gone)
    ids, _ = query(stubs[0], name, train[:100], k=K)
    assert not np.isin(ids, gone).any()
    info = stubs[1].DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name), timeout=30).info
    assert info.element_count == len(train) - len(gone)

    stubs[1].DeleteIndex(luxdb_pb2.DeleteIndexRequest(name=name), timeout=60)
    for stub in stubs:
        assert not stub.IndexExists(luxdb_pb2.IndexExistsRequest(name=name), timeout=30).exists


def test_cluster_refusals_name_the_problem(cluster, luxdb_server):
    stub = cluster[0].stub
    with pytest.raises(grpc.RpcError) as error:
        stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name="wide", space=luxdb_pb2.L2, dim=4,
                                                      shards=2, replicas=NODES + 1), timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{NODES + 1} replicas need as many live nodes; the cluster has {NODES}" in \
        error.value.details()
    assert not stub.IndexExists(luxdb_pb2.IndexExistsRequest(name="wide"), timeout=30).exists

    stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name="twice", space=luxdb_pb2.L2, dim=4,
                                                  shards=2), timeout=30)
    with pytest.raises(grpc.RpcError) as error:
        cluster[1].stub.CreateIndex(luxdb_pb2.CreateIndexRequest(
            name="twice", space=luxdb_pb2.L2, dim=4), timeout=30)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as error:
        cluster[2].stub.QueryIndex(luxdb_pb2.QueryIndexRequest(name="nope", vectors=[0] * 4, k=1),
                                   timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "index 'nope' does not exist" in error.value.details()
    # A shard's own refusal names the cluster index, not the shard.
    cluster[2].stub.InitIndex(luxdb_pb2.InitIndexRequest(name="twice", max_elements=10),
                              timeout=30)
    with pytest.raises(grpc.RpcError) as error:
        cluster[2].stub.QueryIndex(luxdb_pb2.QueryIndexRequest(name="twice", vectors=[0] * 3,
                                                               k=1), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'twice'" in error.value.details() and "shard-" not in error.value.details()
    stub.DeleteIndex(luxdb_pb2.DeleteIndexRequest(name="twice"), timeout=30)

    # A single server refuses what needs a cluster.
    with pytest.raises(grpc.RpcError) as error:
        luxdb_server.stub.CreateIndex(luxdb_pb2.CreateIndexRequest(
            name="solo", space=luxdb_pb2.L2, dim=4, shards=3), timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "need cluster mode (luxdb-server --cluster-etcd)" in error.value.details()


@contextlib.contextmanager
def running_cluster(luxdb_server_bin, tmp_path, prefix, extra=()):
    """etcd and NODES nodes with ids `<prefix>0`... on free ports, started; yields (etcd, nodes).
    The nodes are stopped at the end of the block (SIGTERM, exit 0), and every process is gone
    however the block ends."""
    etcd = Etcd(tmp_path / "etcd", tmp_path / "etcd.log").start()
    nodes = [LuxServer(luxdb_server_bin, tmp_path / f"{prefix}{i}", log_dir=tmp_path,
                       extra_args=["--cluster-etcd", etcd.endpoint, "--node-id", f"{prefix}{i}",
                                   *extra])
             for i in range(NODES)]
    for i, node in enumerate(nodes):
        node.node_id = f"{prefix}{i}"
    try:
        for node in nodes:
            node.start()
        yield etcd, nodes
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.abandon()
        etcd.stop()


def create_index(node, name, dim, shards, replicas, max_elements):
    """Creates and initialises `name` (l2) through `node`."""
    node.stub.CreateIndex(luxdb_pb2.CreateIndexRequest(
        name=name, space=luxdb_pb2.L2, dim=dim, shards=shards, replicas=replicas), timeout=30)
    node.stub.InitIndex(luxdb_pb2.InitIndexRequest(name=name, max_elements=max_elements),
                        timeout=30)


# Each node in turn, each at another moment of the write loop (a write is in flight at any of
# them: the loop sends one after the other without pause).
@pytest.mark.parametrize("victim,kill_after", [(0, 0.7), (1, 1.9), (2, 3.1)])
def test_a_node_killed_during_writes_loses_no_acknowledged_write(luxdb_server_bin, tmp_path,
                                                                 victim, kill_after):
    """SIGKILL of one node of three while a writer adds batches through every node and a reader
    queries through the others: writes resume within 10 s, the reader never fails, and every
    acknowledged item is there afterwards. The killed node, restarted, rejoins and routes."""
    with running_cluster(luxdb_server_bin, tmp_path, "f") as (etcd, nodes):
        stubs = [node.stub for node in nodes]
        dim, name, batch = 16, "churn", 50
        create_index(nodes[0], name, dim, SHARDS, REPLICAS, 200_000)
        survivors = [i for i in range(NODES) if i != victim]
        rng = np.random.default_rng(5)
        acked = {}         # id -> vector
        ack_times = []
        write_errors = []
        read_errors = []
        stop = threading.Event()
        killed = threading.Event()

        def writer():
            next_id, turn = 0, 0
            while not stop.is_set():
                ids = np.arange(next_id, next_id + batch, dtype=np.uint64)
                vectors = rng.standard_normal((batch, dim), dtype=np.float32)
                # Through every node in turn; the killed one only until it is killed.
                order = survivors if killed.is_set() else list(range(NODES))
                entry = order[turn % len(order)]
                turn += 1
                try:
                    stubs[entry].AddItems(add_items_request(name, vectors, ids), timeout=10)
                except grpc.RpcError as error:
                    write_errors.append((time.monotonic(), entry, error.code().name,
                                         error.details()))
                    continue  # the same ids again, through the next node
                for i, v in zip(ids, vectors):
                    acked[int(i)] = v
                ack_times.append(time.monotonic())
                next_id += batch

        def reader():
            turn = 0
            while not stop.is_set():
                entry = survivors[turn % len(survivors)]
                turn += 1
                try:
                    query(stubs[entry], name, rng.standard_normal((1, dim), dtype=np.float32),
                          k=5, timeout=10)
                except grpc.RpcError as error:
                    read_errors.append((entry, error.code().name, error.details()))
                time.sleep(0.01)

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        time.sleep(kill_after)
        killed_at = time.monotonic()
        nodes[victim].signal_and_wait(signal.SIGKILL)
        killed.set()
        time.sleep(9)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        after_kill = [killed_at] + [t for t in ack_times if t > killed_at]
        assert len(after_kill) > 1, (
            f"no write acknowledged after the kill; errors: {write_errors[-5:]}")
        # The longest time without an acknowledged write, from the kill on (a write to a shard
        # the killed node led waits for its lease to expire and a new leader).
        stall = max(b - a for a, b in zip(after_kill, after_kill[1:]))
        print(f"\n[cluster] SIGKILL of node f{victim} {kill_after} s into the writes: "
              f"{len(acked)} items acknowledged, writes stalled at most {stall:.2f} s, "
              f"{len(write_errors)} write calls failed (retried), {len(read_errors)} reads failed")
        assert stall <= 10, f"writes stalled {stall:.1f} s after the kill"
        assert not read_errors, f"queries through surviving nodes failed: {read_errors[:5]}"

        ids = np.array(sorted(acked), dtype=np.uint64)
        got = stubs[survivors[0]].GetElements(
            luxdb_pb2.GetElementsRequest(name=name, ids=ids.tolist()), timeout=60)
        np.testing.assert_array_equal(np.array(got.vectors, dtype=np.float32).reshape(-1, dim),
                                      np.stack([acked[int(i)] for i in ids]))
        info = stubs[survivors[1]].DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name),
                                                 timeout=30).info
        assert info.element_count >= len(acked)
        # The writes that missed the killed node took it out of its shards' in-sync replicas.
        logs = "".join(nodes[i].stderr_text() for i in survivors)
        assert f"f{victim} left the in-sync replicas" in logs

        # The killed node comes back under its id (once its old lease expires) and answers.
        nodes[victim].start()
        ids_back, _ = query(nodes[victim].stub, name, np.stack([acked[0]]), k=1, ef=200)
        assert ids_back[0][0] == 0


def replica_contents(stub, name, shard):
    """What one node's replica of shard `shard` of `name` holds: {id: vector bytes}, read from
    the node's own catalog (the route header a node uses to forward a call)."""
    local = f"{name}.shard-{shard}"
    route = (("luxdb-route", "local"),)
    ids = list(stub.GetIds(luxdb_pb2.GetIdsRequest(name=local), timeout=60, metadata=route).ids)
    if not ids:
        return {}
    got = stub.GetElements(luxdb_pb2.GetElementsRequest(name=local, ids=ids), timeout=60,
                           metadata=route)
    vectors = np.array(got.vectors, dtype=np.float32).reshape(len(ids), -1)
    return {i: v.tobytes() for i, v in zip(ids, vectors)}


class ChurnWriter(threading.Thread):
    """Writes to `name` through the nodes not in `down`, in turn: batches of new items, and now
    and then deletes of acknowledged items and new vectors for others. A write that fails is
    sent again until acknowledged (a failed write may be partly applied; its retry settles
    it). `expected` holds what was acknowledged (id -> vector bytes), `ack_times` when."""

    def __init__(self, nodes, name, dim, batch=40, seed=11):
        super().__init__()
        self.nodes, self.name, self.dim, self.batch = nodes, name, dim, batch
        self.rng = np.random.default_rng(seed)
        self.expected = {}
        self.ack_times = []
        self.errors = []
        self.down = set()
        self.halt = threading.Event()

    def run(self):
        next_id, turn = 0, 0
        pending = None  # a write that failed: sent again as it was (it may be partly applied)
        while not self.halt.is_set():
            entry = [i for i in range(len(self.nodes)) if i not in self.down]
            stub = self.nodes[entry[turn % len(entry)]].stub  # a restart makes a new one
            turn += 1
            if pending is None:
                gone = []
                if turn % 4 == 0 and len(self.expected) > 20:
                    # Deletes of acknowledged items, and new vectors for others.
                    gone = sorted(self.expected)[turn % 7::13][:10]
                    kept = sorted(set(self.expected) - set(gone))
                    ids = np.array(kept[turn % 5::17][:10], dtype=np.uint64)
                else:
                    ids = np.arange(next_id, next_id + self.batch, dtype=np.uint64)
                    next_id += self.batch
                vectors = self.rng.standard_normal((len(ids), self.dim), dtype=np.float32)
                pending = (gone, ids, vectors)
            gone, ids, vectors = pending
            try:
                if gone:
                    stub.DeleteItems(luxdb_pb2.DeleteItemsRequest(name=self.name, ids=gone),
                                     timeout=20)
                stub.AddItems(add_items_request(self.name, vectors, ids), timeout=20)
            except grpc.RpcError as error:
                self.errors.append((time.monotonic(), error.code().name, error.details()))
                continue
            pending = None
            for i in gone:
                del self.expected[i]
            for i, v in zip(ids, vectors):
                self.expected[int(i)] = v.tobytes()
            self.ack_times.append(time.monotonic())

    def stop(self):
        self.halt.set()
        self.join(timeout=60)
        assert not self.is_alive()

    def longest_stall(self, since):
        """The longest time after `since` without an acknowledged write."""
        times = [since] + [t for t in self.ack_times if t > since]
        return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else float("inf")


def wait_in_sync(etcd, nodes, name, node_id, timeout=60):
    """Waits until `node_id` is in the in-sync set of every shard of `name` it holds; returns the
    shard map then."""
    deadline = time.monotonic() + timeout
    while True:
        record = etcd.get_json(f"/luxdb/indexes/{name}")
        lagging = [s for s, shard in enumerate(record["shards"])
                   if node_id in shard["nodes"] and node_id not in shard["inSync"]]
        if not lagging:
            return record
        assert time.monotonic() < deadline, (
            f"{node_id} not back in sync on shards {lagging} after {timeout} s:\n"
            + "".join(node.stderr_text()[-2000:] for node in nodes))
        time.sleep(0.2)


def assert_every_replica_holds(nodes, record, expected):
    """Every replica of every shard holds exactly the acknowledged items."""
    union = {}
    by_id = {f"{node.node_id}": node for node in nodes}
    for s, shard in enumerate(record["shards"]):
        replicas = [replica_contents(by_id[n].stub, record["name"], s) for n in shard["nodes"]]
        assert all(r == replicas[0] for r in replicas), (
            f"the replicas of shard {s} differ: {[len(r) for r in replicas]} items on "
            f"{shard['nodes']}")
        union.update(replicas[0])
    missing = sorted(expected.keys() - union.keys())
    extra = sorted(union.keys() - expected.keys())
    assert not missing and not extra, (
        f"{len(missing)} acknowledged items missing ({missing[:10]}), {len(extra)} items "
        f"deleted or never acknowledged present ({extra[:10]})")
    changed = sorted(i for i in expected if union[i] != expected[i])
    assert not changed, f"{len(changed)} items hold another vector than acknowledged: {changed[:10]}"



def test_a_restarted_node_catches_up_while_writes_go_on(luxdb_server_bin, tmp_path):
    """A node killed during writes and restarted is caught up by its shards' leaders (a copy of
    the leader's replica plus the writes made meanwhile, adds and deletes) and rejoins every
    in-sync set within 60 s, while the writes go on; afterwards every replica of every shard
    holds exactly what was acknowledged."""
    with running_cluster(luxdb_server_bin, tmp_path, "c") as (etcd, nodes):
        dim, name, victim = 8, "rejoin", 1
        create_index(nodes[0], name, dim, SHARDS, REPLICAS, 200_000)
        writer = ChurnWriter(nodes, name, dim)
        writer.start()
        try:
            time.sleep(1.5)
            writer.down.add(victim)
            nodes[victim].signal_and_wait(signal.SIGKILL)
            time.sleep(3)  # its replicas fall out of sync: the writes since missed them
            nodes[victim].start()
            writer.down.clear()
            restarted = time.monotonic()
            wait_in_sync(etcd, nodes, name, f"c{victim}")
            caught_up = time.monotonic() - restarted
            time.sleep(1)  # writes go on to the caught-up replicas as followers
        finally:
            writer.stop()
        print(f"\n[cluster] c{victim} restarted and back in every in-sync set in "
              f"{caught_up:.1f} s; {len(writer.expected)} items acknowledged, "
              f"{len(writer.errors)} write calls failed (retried)")
        logs = "".join(node.stderr_text() for node in nodes)
        assert f"'c{victim}' caught up on shard" in logs
        assert_every_replica_holds(nodes, etcd.get_json(f"/luxdb/indexes/{name}"),
                                   writer.expected)


def test_a_hung_leader_is_replaced_and_fenced(luxdb_server_bin, tmp_path):
    """SIGSTOP of a shard's leader during writes: its lease expires, the other replica leads
    within 10 s and the writes go on; the old leader, resumed, acknowledges nothing of what it
    held (its follower refuses its old epoch, its lease is gone), registers again, is caught up,
    and every replica holds exactly what was acknowledged."""
    with running_cluster(luxdb_server_bin, tmp_path, "h") as (etcd, nodes):
        dim, name = 8, "hung"
        create_index(nodes[0], name, dim, 1, 2, 200_000)
        deadline = time.monotonic() + 10
        while (leader := etcd.get_json(f"/luxdb/leaders/{name}/0")) is None:
            assert time.monotonic() < deadline, "shard 0 has no leader 10 s after its creation"
            time.sleep(0.1)
        victim = int(leader["nodeId"][1:])
        writer = ChurnWriter(nodes, name, dim)
        writer.down.add(victim)  # clients write through the other nodes
        writer.start()
        try:
            time.sleep(1.5)
            stopped_at = time.monotonic()
            nodes[victim].process.send_signal(signal.SIGSTOP)
            time.sleep(8)
            nodes[victim].process.send_signal(signal.SIGCONT)
            wait_in_sync(etcd, nodes, name, f"h{victim}")
            time.sleep(1)
        finally:
            nodes[victim].process.send_signal(signal.SIGCONT)
            writer.stop()
        stall = writer.longest_stall(stopped_at)
        new_leader = etcd.get_json(f"/luxdb/leaders/{name}/0")["nodeId"]
        print(f"\n[cluster] SIGSTOP of leader h{victim} for 8 s: writes stalled at most "
              f"{stall:.2f} s, leader now {new_leader}; {len(writer.expected)} items "
              f"acknowledged, {len(writer.errors)} write calls failed (retried)")
        assert stall <= 10, f"writes stalled {stall:.1f} s after the leader hung"
        assert new_leader != f"h{victim}"
        log = nodes[victim].stderr_text()
        assert "lost its etcd lease" in log
        assert "registered again under a new lease" in log
        assert_every_replica_holds(nodes, etcd.get_json(f"/luxdb/indexes/{name}"),
                                   writer.expected)


def test_a_node_back_with_an_empty_data_directory_is_caught_up(luxdb_server_bin, tmp_path):
    """A node that comes back under its id with its data directory lost (a replaced disk), while
    no write missed it, takes itself out of the in-sync sets of the shards it no longer holds
    before it may lead them or be read from; its shards' leaders catch it up, reads through
    every node answer throughout, and every replica then holds what was acknowledged."""
    with running_cluster(luxdb_server_bin, tmp_path, "w") as (etcd, nodes):
        dim, name, victim = 8, "wiped", 2
        create_index(nodes[0], name, dim, SHARDS, REPLICAS, 100_000)
        writer = ChurnWriter(nodes, name, dim)
        writer.start()
        time.sleep(1.5)
        writer.stop()
        nodes[victim].stop()
        shutil.rmtree(nodes[victim].data_dir)
        os.makedirs(nodes[victim].data_dir)
        nodes[victim].start()
        ids = sorted(writer.expected)
        deadline = time.monotonic() + 60
        while True:
            # Every acknowledged item, through every node, while the node is caught up.
            for node in nodes:
                got = node.stub.GetElements(luxdb_pb2.GetElementsRequest(name=name, ids=ids),
                                            timeout=60)
                assert len(got.vectors) == len(ids) * dim
            record = etcd.get_json(f"/luxdb/indexes/{name}")
            if all(f"w{victim}" in shard["inSync"] for shard in record["shards"]
                   if f"w{victim}" in shard["nodes"]):
                break
            assert time.monotonic() < deadline, "w2 not back in sync 60 s after its restart"
            time.sleep(0.2)
        log = nodes[victim].stderr_text()
        assert "its data directory does not hold the shard" in log
        assert_every_replica_holds(nodes, record, writer.expected)


def test_write_quorum_refuses_writes_until_a_replica_is_back(luxdb_server_bin, tmp_path):
    """With --write-quorum 2, a shard of two replicas one of which is dead takes no writes (a
    clear refusal, nothing written); once the node is back and caught up, writes go on."""
    with running_cluster(luxdb_server_bin, tmp_path, "q", extra=["--write-quorum", "2"]) as (
            etcd, nodes):
        dim, name = 4, "quorum"
        create_index(nodes[0], name, dim, 1, 2, 1000)
        vectors = np.eye(dim, dtype=np.float32)
        ids = np.arange(dim, dtype=np.uint64)
        nodes[0].stub.AddItems(add_items_request(name, vectors, ids), timeout=30)
        holders = etcd.get_json(f"/luxdb/indexes/{name}")["shards"][0]["nodes"]
        victim = int(holders[0][1:])
        entry = next(i for i in range(NODES) if i != victim)
        nodes[victim].signal_and_wait(signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as refused:
            nodes[entry].stub.AddItems(add_items_request(name, vectors, ids + 10), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value
        assert "--write-quorum needs 2" in refused.value.details()
        nodes[victim].start()
        deadline = time.monotonic() + 60
        while True:
            try:
                nodes[entry].stub.AddItems(add_items_request(name, vectors, ids + 20), timeout=30)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
                assert time.monotonic() < deadline, "writes refused 60 s after the restart"
                time.sleep(0.2)
        got = nodes[victim].stub.GetElements(
            luxdb_pb2.GetElementsRequest(name=name, ids=(ids + 20).tolist()), timeout=30)
        np.testing.assert_array_equal(np.array(got.vectors, dtype=np.float32).reshape(-1, dim),
                                      vectors)


def test_the_cli_and_the_python_client_create_sharded_indexes(cluster, luxdb_server,
                                                               client_environment):
    from test_cli import luxdb  # the CLI runner of test_cli (LUXDB_CLI_BIN)

    created = luxdb(cluster[0], "create", "cli-sharded", "--space", "l2", "--dim", "8",
                    "--shards", "3", "--replicas", "2")
    assert "created index 'cli-sharded' (l2, dim 8, 3 shards x 2 replicas)" in created.stdout
    luxdb(cluster[1], "init", "cli-sharded", "--max-elements", "1000")
    info = luxdb(cluster[2], "info", "cli-sharded").stdout
    assert "shards:          3 x 2 replicas" in info
    refused = luxdb(luxdb_server, "create", "solo", "--space", "l2", "--dim", "8", "--shards",
                    "2", check=False)
    assert refused.returncode != 0 and "need cluster mode" in refused.stderr
    bad = luxdb(cluster[0], "create", "x", "--space", "l2", "--dim", "8", "--shards", "0",
                check=False)
    assert bad.returncode == 2 and "--shards" in bad.stderr

    import luxdb as luxdb_package
    from luxdb_testing import TEST_SECRET
    with luxdb_package.sync_client.SyncClient(
            address=cluster[1].address, secret=TEST_SECRET) as client:
        assert client.create_index("py-sharded", "ip", 4, shards=2, replicas=2)
        client.init_index("py-sharded", max_elements=100)
        client.add_items("py-sharded", np.eye(4, dtype=np.float32), np.arange(4))
        labels, _ = client.query_index("py-sharded", np.eye(4, dtype=np.float32), k=1)
        assert labels[:, 0].tolist() == [0, 1, 2, 3]
        client.delete_index("py-sharded")
    luxdb(cluster[0], "drop", "cli-sharded")

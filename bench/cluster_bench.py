#!/usr/bin/python3
"""Cluster benchmark (issue 19): ingest and query throughput of one server against a cluster of
three nodes on this machine, and what the routing hop and the fan-out cost per query.

Configurations, each on fresh data directories and a fresh etcd:
  single      one luxdb-server (no cluster mode)
  1x1         3 nodes, an index of 1 shard x 1 replica: the routing hop alone (a query reaches
              a node that forwards it, unless it holds the shard)
  3x1         3 nodes, 3 shards x 1 replica: every query fans out to 3 shards
  3x2         3 nodes, 3 shards x 2 replicas: every write goes to 2 nodes
For each: Fashion-MNIST's 60,000 x 784 vectors added in batches of --batch through the nodes in
turn (vectors/s), then --queries test vectors as single-vector QueryIndex calls (k 10, ef 40)
from --clients threads through the nodes in turn (queries/s, median and p99 latency), and
recall@10. Every node shares this machine's cores, so the cluster cannot be faster here: the
figures show the cost of routing and fan-out, not the gain of more machines.

  flock /tmp/luxdb-bench.lock env PYTHONPATH=build/python /usr/bin/python3 \\
      bench/cluster_bench.py --server build/server/luxdb-server
"""

import argparse
import gzip
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc

TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
K = 10
EF = 40


def load_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x803:
        sys.exit(f"{path}: not an IDX3 image file")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows * cols).astype(np.float32)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} not listening on port {port} within {timeout} s")


class Processes:
    """Every process the benchmark starts; all stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.started = []

    def start(self, args, name):
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.started.append(process)
        return process

    def stop_all(self):
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.started = []


def start_servers(processes, server, nodes, workdir, label):
    """`nodes` luxdb-server processes (a cluster with its own etcd when nodes > 1); their stubs."""
    extra = []
    if nodes > 1:
        client, peer = free_port(), free_port()
        etcd = processes.start(
            ["/usr/bin/etcd", "--name", "bench", "--data-dir", os.path.join(workdir, f"{label}-etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"bench=http://127.0.0.1:{peer}"], f"{label}-etcd")
        wait_listening(client, etcd, "etcd")
        extra = ["--cluster-etcd", f"127.0.0.1:{client}"]
    stubs = []
    for i in range(nodes):
        port = free_port()
        args = [server, "--insecure", "--port", str(port), "--metrics-port", "0",
                os.path.join(workdir, f"{label}-node{i}")] + extra
        if nodes > 1:
            args += ["--node-id", f"node{i}"]
        process = processes.start(args, f"{label}-node{i}")
        wait_listening(port, process, f"luxdb-server node{i}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_send_message_length", 256 << 20),
            ("grpc.max_receive_message_length", 256 << 20)])
        stub = luxdb_pb2_grpc.LuxDBStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                stub.ListIndexes(luxdb_pb2.ListIndexesRequest(), timeout=5)
                break
            except grpc.RpcError as error:
                if time.monotonic() > deadline:
                    sys.exit(f"node{i} not answering: {error.details()}")
                time.sleep(0.1)
        stubs.append(stub)
    return stubs


def add_request(name, vectors, ids):
    request = luxdb_pb2.AddItemsRequest(name=name)
    request.ids.extend(ids.tolist())
    request.vectors.extend(vectors.ravel().tolist())
    return request


def run(stubs, train, queries, exact, shards, replicas, batch, clients):
    name = "fashion"
    stubs[0].CreateIndex(luxdb_pb2.CreateIndexRequest(
        name=name, space=luxdb_pb2.L2, dim=train.shape[1], shards=shards, replicas=replicas),
        timeout=60)
    stubs[0].InitIndex(luxdb_pb2.InitIndexRequest(name=name, max_elements=len(train)), timeout=60)
    requests = [add_request(name, train[first:first + batch],
                            np.arange(first, min(first + batch, len(train)), dtype=np.uint64))
                for first in range(0, len(train), batch)]
    start = time.monotonic()
    for turn, request in enumerate(requests):
        stubs[turn % len(stubs)].AddItems(request, timeout=600)
    ingest_s = time.monotonic() - start
    stubs[0].SetEf(luxdb_pb2.SetEfRequest(name=name, ef=EF), timeout=60)

    query_requests = [luxdb_pb2.QueryIndexRequest(name=name, k=K, vectors=q.tolist())
                      for q in queries]
    latencies = [0.0] * len(queries)
    found = [None] * len(queries)
    next_query = iter(range(len(queries)))
    lock = threading.Lock()

    def client(c):
        while True:
            with lock:
                i = next(next_query, None)
            if i is None:
                return
            t = time.monotonic()
            response = stubs[(c + i) % len(stubs)].QueryIndex(query_requests[i], timeout=60)
            latencies[i] = time.monotonic() - t
            found[i] = list(response.ids)

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    query_s = time.monotonic() - start
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, exact))
    latencies.sort()
    return {
        "ingest_per_s": len(train) / ingest_s,
        "qps": len(queries) / query_s,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "recall": hits / (K * len(queries)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="build/server/luxdb-server",
                        help="luxdb-server binary (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=2000,
                        help="single-vector queries per configuration (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4,
                        help="client threads sending queries (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=5000,
                        help="vectors per AddItems call (default: %(default)s)")
    args = parser.parse_args()
    for path in (TRAIN, TEST, args.server, "/usr/bin/etcd"):
        if not os.path.exists(path):
            sys.exit(f"missing {path} (Debian packages dataset-fashion-mnist, etcd-server; "
                     f"or build the server)")
    train = load_idx_images(TRAIN)
    queries = load_idx_images(TEST)[:args.queries]
    print(f"cluster_bench: exact neighbours of {len(queries)} queries ...", flush=True)
    # Exact top-10 by brute force in float64 blocks (integers: exact).
    exact = []
    norms = np.einsum("ij,ij->i", train.astype(np.float64), train.astype(np.float64))
    for first in range(0, len(queries), 100):
        q = queries[first:first + 100].astype(np.float64)
        d = norms[None, :] - 2 * q @ train.T.astype(np.float64)
        exact.extend(np.argsort(d, axis=1)[:, :K].tolist())
    configs = [("single", 1, 1, 1), ("1x1", 3, 1, 1), ("3x1", 3, 3, 1), ("3x2", 3, 3, 2)]
    results = {}
    workdir = tempfile.mkdtemp(prefix="luxdb-cluster-bench-")
    processes = Processes(workdir)
    try:
        for label, nodes, shards, replicas in configs:
            print(f"cluster_bench: {label}: {nodes} node(s), {shards} shard(s) x {replicas} "
                  f"replica(s) ...", flush=True)
            stubs = start_servers(processes, os.path.abspath(args.server), nodes, workdir, label)
            results[label] = run(stubs, train, queries, exact, shards, replicas, args.batch,
                                 args.clients)
            processes.stop_all()
    finally:
        processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nFashion-MNIST 60,000 x 784, l2, M 16, ef_construction 200; {len(queries)} "
          f"single-vector queries, k {K}, ef {EF}, {args.clients} client threads; every node "
          f"on this machine's {os.cpu_count()} cores")
    print(f"{'config':8} {'add vec/s':>10} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'recall':>7}")
    for label, r in results.items():
        print(f"{label:8} {r['ingest_per_s']:10.0f} {r['qps']:8.0f} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['recall']:7.4f}")
    single = results["single"]["p50_ms"]
    print(f"routing hop (1x1 - single, median): {results['1x1']['p50_ms'] - single:+.2f} ms; "
          f"fan-out to 3 shards (3x1 - single, median): {results['3x1']['p50_ms'] - single:+.2f} ms")


if __name__ == "__main__":
    main()

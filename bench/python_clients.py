#!/usr/bin/python3
"""luxdb-bench's Python rows (issue 16): what one query costs through a bare generated stub, the
sync client and the async client; one query_index call of every query at once; QueryStream from
both clients. luxdb-bench runs it on its kept index (see `luxdb-bench --help`, --python); by
hand, against any server holding an index of the queries' dimension:

    LUXDB_SECRET=... PYTHONPATH=build/python /usr/bin/python3 bench/python_clients.py \\
        --address 127.0.0.1:8484 --index NAME --queries QUERIES.f32 --dim 784 --ef 40

QUERIES.f32 holds the query vectors as raw little-endian float32, row after row. The index's ef
is set to --ef for the run and restored after it. Progress goes to stderr; the figures to
stdout, one "<name> <value>" line each (times in ms, rates in queries/s):

    stub_p50_ms, sync_p50_ms, async_p50_ms    one query per call, one call at a time: the three
                                              take turns of 100 calls, for --repeats x
                                              --duration s each
    stub_rate, sync_rate, async_rate          their calls/s (calls over time in their turns)
    batch_queries, batch_qps                  one query_index call of every query (best of 3)
    stream_sync_rate, stream_async_rate       every query, one per QueryStream message
    stream_mismatches                         queries whose streamed answer differs from
                                              query_index's (0 unless something is wrong)
"""

import argparse
import asyncio
import os
import sys
import time

import grpc
import numpy as np

import luxdb.client
import luxdb.sync_client
from luxdb import _base, auth
from luxdb.stubs import luxdb_pb2 as pb
from luxdb.stubs import luxdb_pb2_grpc as pb_grpc


BLOCK = 100  # calls per turn of each single-query client


def log(*parts):
    print("[python]", *parts, file=sys.stderr, flush=True)


def percentile_ms(seconds, p):
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Run:
    """The latencies of one timed run of single-query calls."""

    def __init__(self, latencies, wall):
        self.calls = len(latencies)
        self.p50_ms = percentile_ms(latencies, 50)
        self.p99_ms = percentile_ms(latencies, 99)
        self.rate = self.calls / wall

    def __str__(self):
        return f"p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, {self.rate:.0f} calls/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="host:port of the server")
    parser.add_argument("--index", required=True, help="an index of --dim dimensions")
    parser.add_argument("--queries", required=True, help="raw float32 query vectors")
    parser.add_argument("--dim", type=int, required=True, help="the vectors' dimension")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--ef", type=int, default=40,
                        help="the index's ef during the run (default 40)")
    parser.add_argument("--duration", type=float, default=5,
                        help="seconds of single queries per client and repeat (default 5)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="multiplies --duration (default 2)")
    args = parser.parse_args()
    secret = os.environ.get("LUXDB_SECRET")
    if not secret:
        parser.error("the server's secret must be in LUXDB_SECRET")
    if args.dim < 1 or args.k < 1 or args.ef < 1 or args.duration <= 0 or args.repeats < 1:
        parser.error("--dim, --k, --ef and --repeats must be >= 1, --duration > 0")
    raw = np.fromfile(args.queries, dtype="<f4")
    if raw.size == 0 or raw.size % args.dim:
        parser.error(f"{args.queries} holds {raw.size} floats: not a positive multiple of "
                     f"--dim {args.dim}")
    queries = raw.reshape(-1, args.dim)
    host, _, port = args.address.rpartition(":")
    key = auth.derive_key(secret)
    name = args.index

    sync = luxdb.sync_client.SyncClient(host, int(port), secret).connect()
    ef_before = sync.get_ef(name)
    sync.set_ef(name, args.ef)
    try:
        figures = measure(args, queries, key, sync, host, int(port), secret)
    finally:
        sync.set_ef(name, ef_before)
        sync.quit()
    for figure, value in figures.items():
        print(figure, value)


def measure(args, queries, key, sync, host, port, secret):
    name, k = args.index, args.k
    channel = grpc.intercept_channel(
        grpc.insecure_channel(args.address, options=_base.CHANNEL_OPTIONS),
        auth.TokenInterceptor(key))
    stub = pb_grpc.LuxDBStub(channel)

    def stub_query(q):
        # tolist() is the faster way into a repeated float field (~24 us against ~38 for the
        # array itself at 784 dimensions): the stricter reference.
        return stub.QueryIndex(pb.QueryIndexRequest(name=name, vectors=q.tolist(), k=k))

    def sync_query(q):
        return sync.query_index(name, q, k)

    loop = asyncio.new_event_loop()
    aclient = luxdb.client.Client(host, port, secret)
    loop.run_until_complete(aclient.connect())
    n = len(queries)

    def block_of(call, first):
        latencies = []
        clock = time.perf_counter
        for i in range(first, first + BLOCK):
            t0 = clock()
            call(queries[i % n])
            latencies.append(clock() - t0)
        return latencies

    async def async_block(first):
        latencies = []
        clock = time.perf_counter
        for i in range(first, first + BLOCK):
            t0 = clock()
            await aclient.query_index(name, queries[i % n], k)
            latencies.append(clock() - t0)
        return latencies

    kinds = {
        "stub": lambda first: block_of(stub_query, first),
        "sync": lambda first: block_of(sync_query, first),
        "async": lambda first: loop.run_until_complete(async_block(first)),
    }
    for block in kinds.values():  # warm-up: connections, caches, the interpreter's own
        block(0)
    # The kinds take turns, a block of calls each on the same queries, for --repeats x
    # --duration seconds each: the machine's speed drifts over seconds, and turns this short
    # spread the drift over all three alike.
    latencies = {kind: [] for kind in kinds}
    spent = {kind: 0.0 for kind in kinds}
    first = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 3 * args.duration * args.repeats:
        for kind, block in kinds.items():
            t0 = time.perf_counter()
            latencies[kind] += block(first)
            spent[kind] += time.perf_counter() - t0
        first += BLOCK
    figures = {}
    for kind in kinds:
        run = Run(latencies[kind], spent[kind])
        log(f"{kind} single queries, {run.calls} calls in turns of {BLOCK}: {run}")
        figures[f"{kind}_p50_ms"] = f"{run.p50_ms:.4f}"
        figures[f"{kind}_rate"] = f"{run.rate:.1f}"

    seconds = []
    for attempt in range(3):
        start = time.perf_counter()
        labels, _ = sync.query_index(name, queries, k)
        seconds.append(time.perf_counter() - start)
        log(f"one query_index call of {len(queries)} queries: "
            f"{len(queries) / seconds[-1]:.0f} queries/s")
    figures["batch_queries"] = str(len(queries))
    figures["batch_qps"] = f"{len(queries) / min(seconds):.1f}"

    start = time.perf_counter()
    streamed = [answer[0] for answer in sync.query_stream(name, iter(queries), k)]
    sync_stream_s = time.perf_counter() - start
    log(f"sync query_stream of {len(queries)} queries: {len(queries) / sync_stream_s:.0f}/s")

    async def async_stream():
        answers = []
        async for labels_of, _ in aclient.query_stream(name, iter(queries), k):
            answers.append(labels_of)
        return answers

    start = time.perf_counter()
    async_streamed = loop.run_until_complete(async_stream())
    async_stream_s = time.perf_counter() - start
    log(f"async query_stream of {len(queries)} queries: {len(queries) / async_stream_s:.0f}/s")
    loop.run_until_complete(aclient.quit())
    loop.close()
    channel.close()
    figures["stream_sync_rate"] = f"{len(queries) / sync_stream_s:.1f}"
    figures["stream_async_rate"] = f"{len(queries) / async_stream_s:.1f}"
    # The batch call's answers are query_index's; each streamed one must be the same.
    mismatches = sum(1 for i in range(len(queries))
                     if not (np.array_equal(streamed[i][0], labels[i])
                             and np.array_equal(async_streamed[i][0], labels[i])))
    figures["stream_mismatches"] = str(mismatches)
    return figures


if __name__ == "__main__":
    main()

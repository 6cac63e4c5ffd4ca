"""Crash proof (issue 6): kill -9 the server again and again while clients write, restart it
each time on the same data directory, and check that every acknowledged write is still there,
bit for bit, that nothing is half-applied and that nothing deleted comes back.

Each cycle runs fresh writer groups (new seeds, id ranges disjoint from every earlier cycle)
on two indexes, an l2 one of dimension 32 and a cosine one of dimension 8 (stored normalised),
on top of everything earlier cycles left, then SIGKILLs the server at one of these moments:

- "writes":  a random 0.2-2.0 s into the concurrent writes;
- "bulk":    while a single AddItems of BULK_ITEMS x 32 is being inserted into the graph
             (after its storage commit: the index's graph is seen growing), among the writes;
- "compaction": while a CompactIndex of the l2 index is building its new graph (DescribeIndex
             says compacting), among the writes;
- "serving": right after a clean restart (SIGTERM, start) reports SERVING, to catch snapshot
             and replay bugs at open;
- "loading": during the writes as above, and then once more while the restarted server is
             still loading (rebuilding or replaying its graphs), before it serves.

After each kill the server must start again, and the union of all cycles' groups must verify.

Environment:
  LUXDB_CRASH_CYCLES       number of cycles (default 5; 30 for the full run)
  LUXDB_CRASH_SEED         seed of the plan (default: from the clock; printed, so a failing
                           plan can be replayed - kill moments depend on timing too)
  LUXDB_CRASH_SERVER_ARGS  extra luxdb-server flags, split like a shell would (e.g. small
                           snapshot thresholds)
"""

import os
import random
import re
import shlex
import signal
import socket
import time

import grpc
import numpy as np

from acked_writes import WriterGroup, verify_groups
from luxdb.v1 import luxdb_pb2
from luxdb_testing import (_HEALTH_CHECK, _SERVING, START_TIMEOUT_S, LuxServer,
                           _decode_serving_status, add_items_request)

CYCLES = int(os.environ.get("LUXDB_CRASH_CYCLES", "5"))
SERVER_ARGS = shlex.split(os.environ.get("LUXDB_CRASH_SERVER_ARGS", ""))
INDEXES = [  # name, space, dim, max_elements, writer threads
    ("crash_l2", luxdb_pb2.L2, 32, 1_000_000, 4),
    ("crash_cos", luxdb_pb2.COSINE, 8, 500_000, 2),
]
BULK_ITEMS = 5000
CYCLE_ID_STRIDE = 1 << 48  # cycle c's groups write ids from c * CYCLE_ID_STRIDE
# Small batches: as many calls (and kill moments between them) as with large ones, but fewer
# items, so the graph rebuilt at every restart stays small enough for 30 cycles.
MAX_BATCH = 10
WRITES_S = (0.2, 2.0)


def kill_moment(cycle):
    if cycle % 5 == 1:
        return "compaction"
    if cycle % 10 == 4:
        return "serving"
    if cycle % 3 == 2:
        return "bulk"
    if cycle % 4 == 3:
        return "loading"
    return "writes"


def graph_elements(stub, name):
    info = stub.DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name), timeout=5).info
    return info.element_count + info.tombstones


def wait_for_bulk_insertion(stub, name, future, before, limit_s=30):
    """Waits until the bulk AddItems is being inserted into the graph (its write is committed):
    the graph then holds more than `before` + the small writers' share of elements while the
    call is still running. Queries and DescribeIndex no longer wait for insertions, so the
    growth is what shows it. Returns a description of the moment."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if future.done():
            return f"bulk finished {time.monotonic() - started:.2f} s after sending"
        if graph_elements(stub, name) > before + BULK_ITEMS // 10 and not future.done():
            return (f"bulk graph insertion under way "
                    f"{time.monotonic() - started:.2f} s after sending")
        time.sleep(0.002)
    return f"bulk still not inserting after {limit_s} s"


def wait_for_compaction(stub, name, future, limit_s=30):
    """Waits until a CompactIndex is building its graph: DescribeIndex says compacting."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if future.done():
            return f"compaction finished {time.monotonic() - started:.2f} s after sending"
        info = stub.DescribeIndex(luxdb_pb2.DescribeIndexRequest(name=name), timeout=5).info
        if info.compacting:
            return (f"compaction of {info.element_count} live items and {info.tombstones} "
                    f"tombstones under way {time.monotonic() - started:.2f} s after sending")
        time.sleep(0.002)
    return f"compaction still not running after {limit_s} s"


LOADED_LOG = re.compile(r" serving \d+ indexes from ")


def start_loaded(server):
    """Starts the server; returns (seconds from launch until it serves every index, whether its
    health service said SERVING before that). The moment is the server's own "serving N
    indexes" log line, because its health service can report SERVING for a moment right after
    the port opens, while the indexes are still loading (see
    test_health_reports_serving_only_once_the_indexes_are_loaded)."""
    began = time.monotonic()
    server.start()
    answered = time.monotonic() - began
    deadline = began + START_TIMEOUT_S
    while not LOADED_LOG.search(server.stderr_text()):
        assert time.monotonic() < deadline and server.process.poll() is None, (
            f"luxdb-server said SERVING but never logged that it serves its indexes\n"
            f"{server.stderr_text()}")
        time.sleep(0.01)
    loaded = time.monotonic() - began
    return loaded, loaded - answered > 0.1


def kill_server(server, cycle_groups):
    """SIGKILLs the server, then lets the writers see it gone and stop."""
    code, _ = server.signal_and_wait(signal.SIGKILL)
    for group in cycle_groups:
        group.request_stop()
    for group in cycle_groups:
        group.stop()
    assert code == -signal.SIGKILL, (
        f"luxdb-server exited with {code}, not killed by SIGKILL\n{server.stderr_text()}")


def test_sigkill_cycles_keep_every_acknowledged_write(luxdb_server_bin, tmp_path):
    seed = int(os.environ.get("LUXDB_CRASH_SEED", time.time_ns() % (1 << 32)))
    plan = random.Random(seed)
    print(f"\ncrash harness: seed {seed} (LUXDB_CRASH_SEED), {CYCLES} cycles "
          f"(LUXDB_CRASH_CYCLES), server flags {SERVER_ARGS or 'none'} "
          "(LUXDB_CRASH_SERVER_ARGS)")
    server = LuxServer(luxdb_server_bin, tmp_path / "data", log_dir=tmp_path,
                       extra_args=SERVER_ARGS)
    groups = []  # every cycle's groups: their union must verify at every restart
    totals = {"acked": 0, "uncertain": 0, "applied": 0, "restart_s": 0.0, "kills": {},
              "early": 0,  # starts whose health service said SERVING while loading
              "torn": 0}  # kills while a graph snapshot was being written
    started = time.monotonic()
    last_restart_s = 0.5
    try:
        start_loaded(server)
        for name, space, dim, max_elements, _ in INDEXES:
            server.stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name=name, space=space, dim=dim))
            server.stub.InitIndex(luxdb_pb2.InitIndexRequest(name=name, max_elements=max_elements))

        for cycle in range(1, CYCLES + 1):
            kind = kill_moment(cycle)
            cycle_groups = [
                WriterGroup(server.stub, name, dim, count=writers, seed=plan.randrange(1 << 30),
                            id_base=cycle * CYCLE_ID_STRIDE, normalize=space == luxdb_pb2.COSINE,
                            max_batch=MAX_BATCH)
                for name, space, dim, _, writers in INDEXES]
            groups.extend(cycle_groups)
            for group in cycle_groups:
                group.start()
            writes_s = plan.uniform(*WRITES_S)
            time.sleep(writes_s)

            bulk = None
            if kind == "bulk":
                before = graph_elements(server.stub, cycle_groups[0].name)
                bulk = cycle_groups[0].send_bulk(BULK_ITEMS)
                moment = wait_for_bulk_insertion(server.stub, cycle_groups[0].name, bulk, before)
            elif kind == "compaction":
                compaction = server.stub.CompactIndex.future(
                    luxdb_pb2.CompactIndexRequest(name=cycle_groups[0].name), timeout=60)
                moment = wait_for_compaction(server.stub, cycle_groups[0].name, compaction)
            elif kind == "serving":
                for group in cycle_groups:
                    group.stop()
                server.stop()  # SIGTERM: must exit 0 (and snapshot)
                _, early = start_loaded(server)
                totals["early"] += early
                moment = "right after a clean restart reported SERVING"
            else:  # writes, loading
                moment = "during concurrent writes"
            kill_server(server, cycle_groups)
            crashed_log = server.stderr_text()[-4000:]
            # Temporary files of a graph snapshot the killed server was writing (each start
            # removes leftovers, so these are its own).
            torn = sorted(p.name for p in (tmp_path / "data" / "graphs").glob("*.tmp"))
            if torn:
                moment += f" while writing a graph snapshot ({', '.join(torn)})"
                totals["torn"] += 1
            if kind == "loading":
                # The last restart's length tells how long loading takes now.
                delay = plan.uniform(0.05, max(0.1, last_restart_s))
                server.start(wait=False)
                time.sleep(delay)
                code, _ = server.signal_and_wait(signal.SIGKILL)
                assert code == -signal.SIGKILL, (
                    f"cycle {cycle}: luxdb-server exited with {code} while loading\n"
                    f"{server.stderr_text()}")
                crashed_log += ("\n--- log of the server killed while loading ---\n"
                                + server.stderr_text())
                moment += (f", then {delay:.2f} s into the restart "
                           f"({'after' if LOADED_LOG.search(server.stderr_text()) else 'before'} "
                           "it served)")
            bulk_acked = bulk is not None and cycle_groups[0].bulk_done(bulk)
            acked = sum(g.acked_calls for g in cycle_groups)
            uncertain = sum(g.uncertain_calls for g in cycle_groups)  # before settle clears them

            # start() fails the test (with the server's log) unless it serves again.
            restart_s, early = start_loaded(server)
            last_restart_s = restart_s
            totals["early"] += early
            try:
                live = verify_groups(server.stub, groups, settle=True)
            except (AssertionError, grpc.RpcError) as error:
                raise AssertionError(
                    f"cycle {cycle} (seed {seed}, kill {kind}): {error}\n"
                    f"--- end of the killed server's log ---\n{crashed_log}\n"
                    f"--- log of the restarted server ---\n{server.stderr_text()}") from error

            applied = sum(g.applied_uncertain for g in cycle_groups)
            if bulk is not None:
                held = bulk.luxdb_ids[0] in cycle_groups[0].bulk.acked_live
                moment += ("; it was acknowledged" if bulk_acked else
                           f"; unacknowledged, {'held' if held else 'not held'} after restart")
            totals["acked"] += acked
            totals["uncertain"] += uncertain
            totals["applied"] += applied
            totals["restart_s"] += restart_s
            totals["kills"][kind] = totals["kills"].get(kind, 0) + 1
            print(f"cycle {cycle:2d}: kill {kind} after {writes_s:.2f} s of writes, {moment}; "
                  f"{acked} acknowledged calls, {uncertain} uncertain ({applied} applied); "
                  f"restart to SERVING {restart_s:.2f} s"
                  f"{' (health said SERVING early)' if early else ''}; "
                  f"{live} live items verified", flush=True)

        # A clean stop and start on top of the crash-recovered state loses nothing either.
        server.stop()
        start_loaded(server)
        live = verify_groups(server.stub, groups)
        server.stop()
        print(f"totals: {CYCLES} kills {totals['kills']}, {totals['acked']} acknowledged calls, "
              f"{totals['uncertain']} uncertain ({totals['applied']} applied), "
              f"{totals['torn']} kills while a graph snapshot was being written, restarts "
              f"{totals['restart_s']:.1f} s in all ({totals['early']} starts said SERVING "
              f"while loading), {live} live items verified after a final "
              f"clean restart; {time.monotonic() - started:.1f} s wall (seed {seed})")
    finally:
        for group in groups:
            group.request_stop()
        server.abandon()


READINESS_STARTS = 100  # about 5% of starts hit the moment on a 2-core machine


def test_health_reports_serving_only_once_the_indexes_are_loaded(luxdb_server_bin, tmp_path):
    """Readiness after a crash: while a restarted server loads its indexes (here it rebuilds a
    graph of 5,000 items, as after a kill -9 without a snapshot), its health service must say
    NOT_SERVING. A readiness probe that sees SERVING sends traffic, which then waits and fails
    with UNAVAILABLE "LuxDB is loading its indexes". The health check is sent the moment the
    port accepts connections, over many starts: the wrong answer, if any, comes only in the
    moment between the port opening and the server marking itself loading."""
    server = LuxServer(luxdb_server_bin, tmp_path / "data", log_dir=tmp_path)
    n = 5000
    try:
        server.start()
        server.stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name="slow", space=luxdb_pb2.L2,
                                                             dim=32))
        server.stub.InitIndex(luxdb_pb2.InitIndexRequest(name="slow", max_elements=n))
        vectors = np.random.default_rng(5).standard_normal((n, 32)).astype(np.float32)
        server.stub.AddItems(add_items_request("slow", vectors, range(n)))
        server.signal_and_wait(signal.SIGKILL)  # no graph snapshot: each start rebuilds

        for attempt in range(1, READINESS_STARTS + 1):
            launched = time.monotonic()
            server.start(wait=False)
            while True:
                assert server.process.poll() is None, server.stderr_text()
                try:
                    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.001)
            with grpc.insecure_channel(server.address) as channel:
                check = channel.unary_unary(_HEALTH_CHECK, request_serializer=lambda _: b"",
                                            response_deserializer=_decode_serving_status)
                try:
                    status = check(None, timeout=5)
                except grpc.RpcError:
                    status = None
                said = time.monotonic() - launched
                if status == _SERVING:
                    time.sleep(0.2)  # more than the server takes to log once it is loaded
                loaded = LOADED_LOG.search(server.stderr_text()) is not None
            server.signal_and_wait(signal.SIGKILL)
            assert status != _SERVING or loaded, (
                f"start {attempt}: the health service said SERVING {said:.3f} s after launch, "
                f"but 0.2 s later the server was still loading its indexes\n"
                f"--- luxdb-server log ---\n{server.stderr_text()}")

        start_loaded(server)
        assert len(server.stub.GetIds(luxdb_pb2.GetIdsRequest(name="slow")).ids) == n
        server.stop()
    finally:
        server.abandon()

#!/usr/bin/python3
"""Restart benchmark (issue 6): how long LuxDB takes to answer again after a restart, compared
with plain hnswlib loading the same graph in-process, plus crash restart, rebuild and disk use.

For each dataset it starts luxdb-server on a fresh data directory, creates and initialises one
index, ingests the vectors through gRPC in batches, stops the server with SIGTERM (a clean
shutdown writes the graph snapshot), and then measures:

  restart        spawn of luxdb-server -> first correct answer: QueryIndex(k=1, ef=200) with
                 8 stored vectors returns, for one of them at least, its id at distance 0
                 (polled every 10 ms; calls during loading answer UNAVAILABLE). --repeats
                 times; min and median.
  hnswlib load   luxdb-hnsw-load: hnswlib's loadIndex of the same graphs/<cf_id>.hnsw file
                 in-process (page cache warm, as for the restarts), run right before each
                 restart; min and median. The ratio is min/min (and the median of the
                 per-round ratios).
  rebuild        graph snapshot files deleted; spawn -> first correct answer (the server
                 rebuilds the graph of the same items from the stored vectors; its progress
                 lines are echoed). Once; its clean shutdown writes a new snapshot.
  crash restart  after --crash-writes more items (new ids), SIGKILL; spawn -> first correct
                 answer for one of those items (loads the snapshot and replays the tail).
                 --repeats times (each killed again right after answering); min and median.
  disk           bytes under the data directory after the first clean shutdown, by part.

Run with the system Python and the generated stubs on the path, holding the benchmark lock:
  flock /tmp/luxdb-bench.lock env PYTHONPATH=build/python /usr/bin/python3 \\
      bench/restart_bench.py --datasets fashion --out /tmp/restart-fashion.json
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUILD = os.path.join(REPO, "build")

FASHION_TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

SECRET = "luxdb-restart-bench-secret"
INDEX = "bench"
BATCH = 10_000
POLL_INTERVAL_S = 0.01
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
NO_ID = np.iinfo(np.uint64).max
# Stored vectors each start-up query asks for (k=1), and the search breadth it asks with.
PROBES = 8
PROBE_EF = 200


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- datasets


def load_idx_images(path):
    """IDX3 image file -> (count, rows*cols) float32 of the raw pixel values 0..255."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803:
        raise SystemExit(f"{path}: magic {magic:#x} is not an IDX3 image file")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)
    return pixels.reshape(count, rows * cols).astype(np.float32)


def dataset_fashion(args):
    for path in (FASHION_TRAIN, FASHION_TEST):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path} (Debian package dataset-fashion-mnist)")
    train = load_idx_images(FASHION_TRAIN)
    extra = load_idx_images(FASHION_TEST)[:args.fashion_crash_writes]
    return {
        "name": "fashion-mnist",
        "description": f"Fashion-MNIST train {train.shape[0]}x{train.shape[1]} (uint8 pixels "
                       f"as float32); crash writes: the first {len(extra)} test images",
        "space": "l2", "space_enum": 1, "m": 16, "ef_construction": 200,
        "vectors": train, "extra": extra, "check_unique": True,
    }


def dataset_synthetic(args):
    rng = np.random.default_rng(args.seed)
    vectors = rng.random((args.n, args.dim), dtype=np.float32)
    extra = rng.random((args.synthetic_crash_writes, args.dim), dtype=np.float32)
    return {
        "name": f"uniform-{args.n}x{args.dim}",
        "description": f"{args.n}x{args.dim} float32 uniform on [0,1) from numpy "
                       f"default_rng({args.seed}); crash writes: {len(extra)} more from the "
                       f"same generator",
        "space": "l2", "space_enum": 1, "m": 16, "ef_construction": 100,
        "vectors": vectors, "extra": extra, "check_unique": False,
    }


DATASETS = {"fashion": dataset_fashion, "synthetic": dataset_synthetic}


def pick_probes(vectors, count, universe=None):
    """`count` row numbers spread over `vectors` whose vectors occur once in `universe` (a
    duplicate would make 'the answer is this id at distance 0' ambiguous). Without a universe
    nothing is checked: uniform random float32 rows are distinct for practical purposes."""
    probes = []
    for slot in range(count):
        start = (2 * slot + 1) * len(vectors) // (2 * count)
        for i in range(start, len(vectors)):
            if universe is None or np.count_nonzero((universe == vectors[i]).all(axis=1)) == 1:
                probes.append(i)
                break
    if not probes:
        raise SystemExit("no vector of the dataset occurs only once")
    return np.array(probes)


# ---------------------------------------------------------------- protobuf encoding


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _packed(field_number, payload):
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def add_items_request(pb2, name, vectors, ids):
    """AddItemsRequest for an (n, dim) float array, encoded straight from numpy."""
    floats = _packed(2, np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    varints = _packed(3, b"".join(_varint(int(v)) for v in ids))
    return pb2.AddItemsRequest.FromString(
        pb2.AddItemsRequest(name=name).SerializeToString() + floats + varints)


def query_request(pb2, name, vectors, k, ef):
    floats = _packed(2, np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    return pb2.QueryIndexRequest.FromString(
        pb2.QueryIndexRequest(name=name, k=k, ef=ef).SerializeToString() + floats)


# ---------------------------------------------------------------- server process


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_log_time(line):
    """Epoch seconds of a server log line ('%Y-%m-%dT%H:%M:%S.%e', local time), or None."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) ", line)
    if not match:
        return None
    return datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()


class Server:
    """One luxdb-server process on a loopback port, its log in a file."""

    def __init__(self, bench, data_dir, label):
        self.bench = bench
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = os.path.join(os.path.dirname(data_dir), f"server-{label}.log")
        self.channel = None
        self.stub = None
        self._log_offset = 0
        command = [bench.args.server, "--host", "127.0.0.1", "--port", str(self.port),
                   "--loglevel", "info", "--secret", SECRET, "--threads", str(bench.args.threads),
                   *bench.args.server_arg, data_dir]
        env = dict(os.environ)
        env["KDF_ITERATIONS"] = str(bench.args.kdf_iterations)
        env.pop("LUXDB_SALT", None)
        env.pop("LUXBD_SALT", None)
        self.log_file = open(self.log_path, "wb")
        self.spawn_wall = time.time()
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                        stderr=self.log_file, env=env)

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def new_log_lines(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            f.seek(self._log_offset)
            text = f.read()
        end = text.rfind("\n") + 1
        self._log_offset += len(text[:end].encode("utf-8"))
        return text[:end].splitlines()

    def _check_alive(self):
        if self.process.poll() is not None:
            raise SystemExit(f"luxdb-server exited with {self.process.returncode}; log "
                             f"{self.log_path}:\n{self.log_text()[-4000:]}")

    def wait_listening(self, deadline):
        while True:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.monotonic()
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"luxdb-server not listening within the timeout; log "
                                     f"{self.log_path}")
                time.sleep(POLL_INTERVAL_S)

    def connect(self):
        grpc, pb2, pb2_grpc, auth = self.bench.modules
        self.channel = grpc.intercept_channel(
            grpc.insecure_channel(f"127.0.0.1:{self.port}", options=CHANNEL_OPTIONS),
            auth.TokenInterceptor(self.bench.key))
        self.stub = pb2_grpc.LuxDBStub(self.channel)

    def wait_first_correct_answer(self, vectors, ids, timeout_s, echo=None):
        """Seconds from spawn until one QueryIndex(k=1, ef=PROBE_EF) of the stored `vectors`
        answers, for at least one of them, its id in `ids` at distance 0 (the server answers
        only once the whole index is loaded; an approximate search may miss a probe, hence
        several). `echo(line)` is called for new server log lines while waiting."""
        grpc, pb2, _, _ = self.bench.modules
        deadline = self.spawned + timeout_s
        listening = self.wait_listening(deadline)
        self.connect()
        request = query_request(pb2, INDEX, vectors, 1, PROBE_EF)
        ids = np.asarray(ids, dtype=np.uint64)
        attempts = 0
        last = "no answer"
        while True:
            self._check_alive()
            if echo:
                for line in self.new_log_lines():
                    echo(line)
            attempts += 1
            try:
                response = self.stub.QueryIndex(request, timeout=10)
                answered = time.monotonic()
                got = np.array(response.ids, dtype=np.uint64)
                distances = np.array(response.distances, dtype=np.float32)
                found = int(np.count_nonzero((got == ids) & (distances == 0.0))) \
                    if len(got) == len(ids) else 0
                if found > 0:
                    return {"seconds": answered - self.spawned,
                            "listening_seconds": listening - self.spawned,
                            "attempts": attempts, "probes_found": found,
                            "probes": len(ids), "loadavg_1min": os.getloadavg()[0]}
                # Loaded, yet no probe found: the index will not change, so polling is futile.
                self.kill()
                raise SystemExit(f"the loaded index finds none of the probes {list(ids)}: "
                                 f"ids {list(got)} distances {list(distances)}; log "
                                 f"{self.log_path}")
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise SystemExit(f"QueryIndex failed with {error.code().name}: "
                                     f"{error.details()}; log {self.log_path}")
                last = f"{error.code().name}: {error.details()}"
            if time.monotonic() > deadline:
                self.kill()
                raise SystemExit(f"no correct answer within {timeout_s} s (last: {last}); "
                                 f"log {self.log_path}")
            time.sleep(POLL_INTERVAL_S)

    def phases(self):
        """Server-side timings from the log, in seconds after spawn."""
        out = {}
        marks = {
            "listening": r" listening on ",
            "load_done": r"index '.*': (loaded graph snapshot|rebuilt graph)",
            "serving": r" serving \d+ indexes from ",
        }
        for line in self.log_text().splitlines():
            at = parse_log_time(line)
            if at is None:
                continue
            for name, pattern in marks.items():
                if name not in out and re.search(pattern, line):
                    out[name] = round(at - self.spawn_wall, 3)
            match = re.search(r"(loaded graph snapshot.*|rebuilt graph.*) in ([0-9.]+) s", line)
            if match and "load_log_seconds" not in out:
                out["load_log_seconds"] = float(match.group(2))
                out["load_log_line"] = line.split(" ", 2)[-1]
        return out

    def close_channel(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None
            self.stub = None

    def terminate(self, timeout=1800):
        """SIGTERM and wait for exit code 0 (the clean shutdown writes the graph snapshot)."""
        self.close_channel()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.log_file.close()
        if code != 0:
            raise SystemExit(f"luxdb-server exited with {code} after SIGTERM; log "
                             f"{self.log_path}:\n{self.log_text()[-4000:]}")
        return time.monotonic() - started

    def kill(self):
        self.close_channel()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log_file.close()


# ---------------------------------------------------------------- measurements


def disk_usage(data_dir):
    """Bytes (apparent sizes) under the data directory, by part."""
    parts = {"db_sst": 0, "db_wal": 0, "db_other": 0, "graphs_hnsw": 0, "graphs_meta": 0,
             "graphs_other": 0, "other": 0}
    files = {}
    for root, _, names in os.walk(data_dir):
        for name in names:
            path = os.path.join(root, name)
            size = os.lstat(path).st_size
            rel = os.path.relpath(path, data_dir)
            files[rel] = size
            if rel.startswith("db" + os.sep):
                part = ("db_sst" if name.endswith(".sst") else
                        "db_wal" if name.endswith(".log") and not name.startswith("LOG") else
                        "db_other")
            elif rel.startswith("graphs" + os.sep):
                part = ("graphs_hnsw" if name.endswith(".hnsw") else
                        "graphs_meta" if name.endswith(".meta") else "graphs_other")
            else:
                part = "other"
            parts[part] += size
    parts["db"] = parts["db_sst"] + parts["db_wal"] + parts["db_other"]
    parts["graphs"] = parts["graphs_hnsw"] + parts["graphs_meta"] + parts["graphs_other"]
    parts["total"] = parts["db"] + parts["graphs"] + parts["other"]
    return parts, files


def graph_files(data_dir):
    graphs = os.path.join(data_dir, "graphs")
    return sorted(os.path.join(graphs, f) for f in os.listdir(graphs)
                  if f.endswith(".hnsw") or f.endswith(".meta"))


class Bench:
    def __init__(self, args):
        self.args = args
        import grpc
        try:
            from luxdb import auth
            from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc
        except ImportError as error:
            raise SystemExit(f"cannot import the LuxDB Python stubs: build the luxdb_python "
                             f"target and set PYTHONPATH=<build>/python ({error})")
        self.modules = (grpc, luxdb_pb2, luxdb_pb2_grpc, auth)
        self.key = auth.derive_key(SECRET, auth.DEFAULT_SALT, args.kdf_iterations)

    def server(self, data_dir, label):
        return Server(self, data_dir, label)

    def ingest(self, server, vectors, first_id, what):
        _, pb2, _, _ = self.modules
        started = time.monotonic()
        total = len(vectors)
        for start in range(0, total, BATCH):
            chunk = vectors[start:start + BATCH]
            ids = np.arange(first_id + start, first_id + start + len(chunk), dtype=np.uint64)
            response = server.stub.AddItems(add_items_request(pb2, INDEX, chunk, ids),
                                            timeout=3600)
            if response.added != len(chunk):
                raise SystemExit(f"AddItems added {response.added} of {len(chunk)}")
            done = start + len(chunk)
            elapsed = time.monotonic() - started
            if done == total or (start // BATCH) % self.args.progress_every == 0:
                log(f"  {what}: {done}/{total} items, {elapsed:.1f} s, {done / elapsed:.0f}/s")
        return time.monotonic() - started

    def hnswlib_load(self, graph_path, space, dim, repeat):
        command = [self.args.hnsw_load, "--space", space, "--dim", str(dim), graph_path,
                   "--repeat", str(repeat)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def run_dataset(self, key):
        args = self.args
        log(f"=== dataset {key}: loading vectors")
        data = DATASETS[key](args)
        vectors, extra = data["vectors"], data["extra"]
        n, dim = vectors.shape
        if data["check_unique"]:
            probe = pick_probes(vectors, PROBES, vectors)
            extra_probe = pick_probes(extra, PROBES, np.concatenate([vectors, extra])) \
                if len(extra) else None
        else:
            probe = pick_probes(vectors, PROBES)
            extra_probe = pick_probes(extra, PROBES) if len(extra) else None
        result = {
            "dataset": data["name"], "description": data["description"], "items": n,
            "dim": dim, "space": data["space"], "m": data["m"],
            "ef_construction": data["ef_construction"], "max_elements": n + len(extra),
            "crash_writes": len(extra), "batch": BATCH, "threads": args.threads,
            "kdf_iterations": args.kdf_iterations, "repeats": args.repeats,
            "probe_ids": [int(i) for i in probe], "probe_ef": PROBE_EF,
        }
        log(f"{data['description']}; l2, M={data['m']}, ef_construction="
            f"{data['ef_construction']}, max_elements={n + len(extra)}")

        run_dir = tempfile.mkdtemp(prefix=f"luxdb-restart-{key}-", dir=args.workdir)
        data_dir = os.path.join(run_dir, "data")
        result["run_dir"] = run_dir
        try:
            self._run(data, data_dir, probe, extra_probe, result)
        finally:
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
        return result

    def _run(self, data, data_dir, probe, extra_probe, result):
        args = self.args
        _, pb2, _, _ = self.modules
        vectors, extra = data["vectors"], data["extra"]
        n, dim = vectors.shape
        timeout = args.timeout

        # --- ingest
        server = self.server(data_dir, "ingest")
        server.wait_listening(server.spawned + timeout)
        server.connect()
        server.stub.CreateIndex(pb2.CreateIndexRequest(name=INDEX, space=data["space_enum"],
                                                       dim=dim), timeout=60)
        server.stub.InitIndex(pb2.InitIndexRequest(
            name=INDEX, max_elements=n + len(extra), m=data["m"],
            ef_construction=data["ef_construction"]), timeout=600)
        log(f"ingesting {n} items in batches of {BATCH} (server --threads {args.threads})")
        seconds = self.ingest(server, vectors, 0, "ingest")
        result["ingest_seconds"] = round(seconds, 2)
        result["ingest_items_per_s"] = round(n / seconds, 1)
        stop = server.terminate()
        result["ingest_shutdown_seconds"] = round(stop, 2)
        log(f"ingested in {seconds:.1f} s ({n / seconds:.0f}/s); clean shutdown "
            f"(SIGTERM, snapshot written) took {stop:.1f} s")

        # --- disk, after the clean shutdown
        parts, files = disk_usage(data_dir)
        result["disk"] = parts
        result["disk_files"] = files
        result["bytes_per_vector"] = {k: round(v / n, 1) for k, v in parts.items()}
        result["raw_vector_bytes"] = dim * 4
        graph = [f for f in graph_files(data_dir) if f.endswith(".hnsw")]
        if len(graph) != 1:
            raise SystemExit(f"expected one graph snapshot in {data_dir}/graphs, found {graph}")
        graph = graph[0]
        log(f"disk: db/ {parts['db'] / 2**20:.1f} MiB (sst {parts['db_sst'] / 2**20:.1f}, "
            f"wal {parts['db_wal'] / 2**20:.1f}, other {parts['db_other'] / 2**20:.1f}), "
            f"graphs/ {parts['graphs'] / 2**20:.1f} MiB, total {parts['total'] / 2**20:.1f} MiB "
            f"= {parts['total'] / n:.0f} B per vector (raw vector {dim * 4} B)")

        # --- restart from the snapshot, each right after an in-process hnswlib load of the
        # same file, so both see the same page cache and much the same machine load
        restarts = []
        hnsw_runs = []
        for i in range(args.repeats):
            hnsw = self.hnswlib_load(graph, data["space"], dim, 1)
            hnsw_runs.append(hnsw)
            server = self.server(data_dir, f"restart-{i + 1}")
            answer = server.wait_first_correct_answer(vectors[probe], probe, timeout)
            answer.update(server.phases())
            server.terminate()
            answer["hnswlib_load_seconds"] = hnsw["seconds"]
            restarts.append(answer)
            log(f"round {i + 1}: hnswlib loadIndex of {os.path.basename(graph)} "
                f"({hnsw['file_bytes'] / 2**20:.1f} MiB) {hnsw['seconds']:.3f} s; LuxDB restart: "
                f"first correct answer after {answer['seconds']:.3f} s (port open "
                f"{answer['listening_seconds']:.3f} s; server log: "
                f"{answer.get('load_log_line', '?')})")
        hnsw_times = [h["seconds"] for h in hnsw_runs]
        result["hnswlib_load"] = hnsw_runs
        result["hnswlib_load_seconds"] = round(min(hnsw_times), 3)
        result["hnswlib_load_median_seconds"] = round(statistics.median(hnsw_times), 3)
        result["restarts"] = restarts
        times = [r["seconds"] for r in restarts]
        result["restart_min_seconds"] = round(min(times), 3)
        result["restart_median_seconds"] = round(statistics.median(times), 3)
        result["restart_vs_hnswlib"] = round(min(times) / min(hnsw_times), 2)
        result["restart_vs_hnswlib_paired_median"] = round(
            statistics.median(r / h for r, h in zip(times, hnsw_times)), 2)

        # --- rebuild from the stored vectors
        if not args.skip_rebuild:
            for path in graph_files(data_dir):
                os.remove(path)
            log("graph snapshot deleted; restarting (the server rebuilds from the stored "
                "vectors)")
            server = self.server(data_dir, "rebuild")

            def echo(line):
                if "rebuil" in line or "snapshot" in line:
                    log(f"  server: {line.split(' ', 2)[-1]}")

            answer = server.wait_first_correct_answer(vectors[probe], probe, timeout, echo=echo)
            answer.update(server.phases())
            items = n
            log(f"rebuild of {items} items: first correct answer after {answer['seconds']:.1f} s")
            # The clean shutdown snapshots the rebuilt graph, which the crash test goes on with.
            answer["shutdown_seconds"] = round(server.terminate(), 2)
            answer["items"] = items
            result["rebuild"] = answer
            result["rebuild_seconds"] = round(answer["seconds"], 2)
            result["rebuild_vs_restart"] = round(answer["seconds"] / result["restart_min_seconds"],
                                                 1)

        # --- crash restart: more writes, SIGKILL, load snapshot + replay the tail
        if len(extra):
            server = self.server(data_dir, "crash-writes")
            server.wait_first_correct_answer(vectors[probe], probe, timeout)
            log(f"writing {len(extra)} more items, then SIGKILL")
            self.ingest(server, extra, n, "crash writes")
            server.kill()
            crashes = []
            for i in range(args.repeats):
                server = self.server(data_dir, f"crash-restart-{i + 1}")
                answer = server.wait_first_correct_answer(extra[extra_probe], n + extra_probe,
                                                          timeout)
                answer.update(server.phases())
                last = i == args.repeats - 1
                if last:
                    server.terminate()  # snapshots the replayed graph
                else:
                    server.kill()  # keeps the old snapshot and history: the same replay again
                crashes.append(answer)
                log(f"crash restart {i + 1}: first correct answer after "
                    f"{answer['seconds']:.3f} s (server log: {answer.get('load_log_line', '?')})")
            result["crash_restarts"] = crashes
            times = [r["seconds"] for r in crashes]
            result["crash_restart_min_seconds"] = round(min(times), 3)
            result["crash_restart_median_seconds"] = round(statistics.median(times), 3)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(results):
    header = ["dataset", "items", "hnswlib load s min/med", "restart s min/med",
              "server load s",
              "ratio (<=1.5) min (paired med)",
              "rebuild s", "rebuild/restart (>=20)", "crash restart s min/med",
              "bytes/vector (db+graphs)"]
    rows = []
    for r in results:
        per = r["bytes_per_vector"]
        rows.append([
            r["dataset"], str(r["items"]),
            f"{r['hnswlib_load_seconds']:.3f}/{r['hnswlib_load_median_seconds']:.3f}",
            f"{r['restart_min_seconds']:.3f}/{r['restart_median_seconds']:.3f}",
            fmt(min((x["load_log_seconds"] for x in r["restarts"] if "load_log_seconds" in x),
                    default=None), ".2f"),
            f"{r['restart_vs_hnswlib']:.2f} ({r['restart_vs_hnswlib_paired_median']:.2f})",
            fmt(r.get("rebuild_seconds"), ".1f"), fmt(r.get("rebuild_vs_restart"), ".1f"),
            (f"{r['crash_restart_min_seconds']:.3f}/{r['crash_restart_median_seconds']:.3f}"
             if "crash_restart_min_seconds" in r else "-"),
            f"{per['total']:.0f} ({per['db']:.0f}+{per['graphs']:.0f})",
        ])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    for r in results:
        print(f"{r['dataset']}: l2, M={r['m']}, ef_construction={r['ef_construction']}, "
              f"max_elements={r['max_elements']}, ingest {r['ingest_items_per_s']:.0f} items/s "
              f"(batches of {r['batch']}, --threads {r['threads']}), crash writes "
              f"{r['crash_writes']}; disk after clean shutdown: db/ {r['disk']['db']} B "
              f"(sst {r['disk']['db_sst']}, wal {r['disk']['db_wal']}, other "
              f"{r['disk']['db_other']}), graphs/ {r['disk']['graphs']} B; raw vector "
              f"{r['raw_vector_bytes']} B")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=DEFAULT_BUILD,
                        help="build directory holding the binaries (default %(default)s)")
    parser.add_argument("--server", help="luxdb-server binary (default BUILD/server/luxdb-server)")
    parser.add_argument("--hnsw-load",
                        help="luxdb-hnsw-load binary (default BUILD/bench/luxdb-hnsw-load)")
    parser.add_argument("--datasets", default="fashion,synthetic",
                        help="comma-separated: fashion, synthetic (default %(default)s)")
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic: items")
    parser.add_argument("--dim", type=int, default=128, help="synthetic: dimension")
    parser.add_argument("--seed", type=int, default=42, help="synthetic: numpy seed")
    parser.add_argument("--fashion-crash-writes", type=int, default=10_000)
    parser.add_argument("--synthetic-crash-writes", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="luxdb-server --threads")
    parser.add_argument("--kdf-iterations", type=int, default=1000,
                        help="KDF_ITERATIONS for server and client (the tests' value; the "
                             "production default 2^18 adds its cost to every start)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra luxdb-server flag (repeatable), e.g. --server-arg=--no-sync")
    parser.add_argument("--workdir", default="/tmp", help="where the data directories go")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument("--timeout", type=float, default=7200,
                        help="seconds a start may take before the run fails")
    parser.add_argument("--progress-every", type=int, default=10,
                        help="print ingest progress every this many batches")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    args.server = args.server or os.path.join(args.build, "server", "luxdb-server")
    args.hnsw_load = args.hnsw_load or os.path.join(args.build, "bench", "luxdb-hnsw-load")
    for path in (args.server, args.hnsw_load):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is not an executable (build it, or pass --server / "
                             f"--hnsw-load / --build)")
    keys = [k.strip() for k in args.datasets.split(",") if k.strip()]
    for k in keys:
        if k not in DATASETS:
            raise SystemExit(f"unknown dataset '{k}'; use {', '.join(DATASETS)}")

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    print(f"command: {command}", flush=True)
    bench = Bench(args)
    results = []
    report = {"command": command, "host": platform.node(), "cpus": os.cpu_count(),
              "server": args.server, "hnsw_load": args.hnsw_load,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    for key in keys:
        results.append(bench.run_dataset(key))
        if args.out:  # after every dataset, so a long run keeps what it measured
            with open(args.out, "w") as f:
                json.dump(report, f, indent=2)
    print()
    print(f"command: {command}")
    print_table(results)
    if args.out:
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

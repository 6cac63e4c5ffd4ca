"""The request log of luxdb-server at --loglevel info (README "Metrics and logs"): one line per
call that changes state and per failed call (a refused token included), with method, index,
items, status code, milliseconds and peer; successful queries summed up once a second, so 1,000
of them make a few lines; the same as JSON objects with --log-format json, where every line the
server writes parses.
"""

import json
import re
import time

import grpc
import numpy as np
import pytest

from luxdb_testing import LuxServer, add_items_request, query
from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc

QUERIES = 20


def run_workload(server, queries=QUERIES):
    """Create, init, add, `queries` queries, a NOT_FOUND and a refused call, then a clean stop.
    Returns the seconds the queries took."""
    stub = server.stub
    stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name="docs", space=luxdb_pb2.L2, dim=4))
    stub.InitIndex(luxdb_pb2.InitIndexRequest(name="docs", max_elements=100))
    rng = np.random.default_rng(3)
    stub.AddItems(add_items_request("docs", rng.random((10, 4), dtype=np.float32), np.arange(10)))
    started = time.monotonic()
    for _ in range(queries):
        query(stub, "docs", rng.random((1, 4)), 3)
    seconds = time.monotonic() - started
    with pytest.raises(grpc.RpcError) as missing:
        query(stub, "nope", rng.random((1, 4)), 3)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            luxdb_pb2_grpc.LuxDBStub(channel).AddItems(luxdb_pb2.AddItemsRequest(name="docs"),
                                                       timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    server.stop()  # the last reads are summed up at shutdown
    return seconds


@pytest.fixture
def start_server(luxdb_server_bin, tmp_path):
    servers = []

    def start(*flags):
        server = LuxServer(luxdb_server_bin, tmp_path / f"data{len(servers)}", log_dir=tmp_path,
                           extra_args=list(flags))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.abandon()


def text_calls(log):
    """The text request log's call lines: the fields after "call", as a dict."""
    calls = []
    for line in log.splitlines():
        match = re.match(r"^\S+ info call (.*)$", line)
        if match:
            fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', match.group(1)))
            calls.append({k: v[1:-1] if v.startswith('"') else v for k, v in fields.items()})
    return calls


def text_summaries(log):
    """{method: count} of each text "reads" line."""
    out = []
    for line in log.splitlines():
        match = re.match(r"^\S+ info reads (.*)$", line)
        if match:
            fields = dict(re.findall(r"(\w+)=(\S+)", match.group(1)))
            assert float(fields["p50_ms"]) <= float(fields["p99_ms"]) <= float(fields["max_ms"])
            out.append({k: int(v) for k, v in fields.items() if k[0].isupper()})
            assert sum(out[-1].values()) == int(fields["calls"])
    return out


def test_text_lines_for_writes_and_failures_and_a_summary_of_queries(start_server):
    server = start_server("--log-format", "text")
    run_workload(server)
    log = server.stderr_text()
    calls = text_calls(log)
    by_method = {}
    for call in calls:
        by_method.setdefault(call["method"], []).append(call)

    for method in ["CreateIndex", "InitIndex", "AddItems"]:
        [call] = [c for c in by_method[method] if c["code"] == "OK"]
        assert call["index"] == "docs", call
        assert re.fullmatch(r"ipv4:127\.0\.0\.1:\d+", call["peer"]), call
        assert float(call["ms"]) >= 0
    assert [c["items"] for c in by_method["AddItems"] if c["code"] == "OK"] == ["10"]
    # The one failed query, and no line for the successful ones.
    [failed] = by_method["QueryIndex"]
    assert failed["index"] == "nope" and failed["code"] == "NOT_FOUND", failed
    assert failed["error"] == "index 'nope' does not exist", failed
    # A refused token: logged with its reason; gRPC's transport refused it before there was a
    # call with a peer.
    refused = [c for c in calls if c["code"] == "UNAUTHENTICATED"]
    assert len(refused) == 1, calls
    assert refused[0]["method"] == "AddItems" and refused[0]["auth"] == "missing"
    assert "peer" not in refused[0]
    # The queries are summed up instead.
    summaries = text_summaries(log)
    assert summaries, log
    assert sum(s.get("QueryIndex", 0) for s in summaries) == QUERIES


def test_json_lines_all_parse(start_server):
    server = start_server("--log-format", "json")
    run_workload(server)
    lines = server.stderr_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}", pytrace=False)
    for entry in parsed:
        assert set(entry) >= {"time", "level", "msg"}, entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]), entry
    calls = [e for e in parsed if e["msg"] == "call"]
    added = [c for c in calls if c["method"] == "AddItems" and c["code"] == "OK"]
    assert len(added) == 1 and added[0]["items"] == 10 and added[0]["index"] == "docs", calls
    assert isinstance(added[0]["ms"], float) and added[0]["peer"].startswith("ipv4:127.0.0.1:")
    failed = [c for c in calls if c["method"] == "QueryIndex"]
    assert len(failed) == 1 and failed[0]["code"] == "NOT_FOUND", calls
    assert failed[0]["error"] == "index 'nope' does not exist"
    refused = [c for c in calls if c["code"] == "UNAUTHENTICATED"]
    assert len(refused) == 1 and refused[0]["auth"] == "missing", calls
    reads = [e for e in parsed if e["msg"] == "reads"]
    assert sum(r["methods"].get("QueryIndex", 0) for r in reads) == QUERIES
    # The server's other lines are JSON too, its start and stop messages included.
    messages = [e["msg"] for e in parsed]
    assert any(m.startswith("luxdb-server: serving '") for m in messages), messages
    assert any(m.startswith("received SIGTERM") for m in messages), messages


def test_a_thousand_queries_make_a_few_summary_lines(start_server):
    server = start_server()
    seconds = run_workload(server, queries=1000)
    log = server.stderr_text()
    summaries = text_summaries(log)
    assert sum(s.get("QueryIndex", 0) for s in summaries) == 1000
    # At most one line a second while they ran (plus the partial seconds at both ends).
    assert 1 <= len(summaries) <= seconds + 3, (seconds, summaries)
    assert [c for c in text_calls(log) if c["method"] == "QueryIndex" and c["code"] == "OK"] == []

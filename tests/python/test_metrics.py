"""Prometheus metrics of luxdb-server (README "Metrics and logs"): a scrape after a mixed
workload (create, add, query, a QueryStream, a NOT_FOUND, refused tokens) counts what a user did
and passes Debian's `promtool check metrics`; a real Prometheus (Debian's /usr/bin/prometheus)
scrapes a running server and finds its luxdb_ series through the query API; the Grafana
dashboard (deploy/grafana) is valid JSON whose queries use only metrics the server exports and
that Prometheus accepts; a metrics port in use stops the server from starting.

promtool and prometheus come from the Debian package prometheus (scripts/install-deps.sh). Where
they are missing these tests are skipped, except in CI (CI set, as .ci/run does), where that is
a failure.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest

from luxdb_testing import (LuxServer, add_items_request, free_port, query, server_environment,
                           token_metadata)
from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(REPOSITORY, "deploy", "grafana", "luxdb-dashboard.json")
QUERIES = 20
TIMEOUT_S = 60


def prometheus_binary(name):
    """Path of Debian's `name` (promtool, prometheus); skips the test where it is missing,
    fails it in CI, which installs it."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if os.access(path, os.X_OK):
        return path
    message = f"{name} not found: install the Debian package prometheus (scripts/install-deps.sh)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def metrics_server(luxdb_server_bin, tmp_path):
    """A luxdb-server serving metrics on a free loopback port (`metrics_port`), snapshotting
    an index's graph every 5 items so that snapshot ages exist."""
    metrics_port = free_port()
    server = LuxServer(luxdb_server_bin, tmp_path / "data", log_dir=tmp_path,
                       extra_args=["--metrics-port", str(metrics_port), "--snapshot-every", "5"])
    server.metrics_port = metrics_port
    try:
        server.start()
        yield server
        server.stop()
    finally:
        server.abandon()


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """{(name, frozenset of (label, value)): value} of a scrape in the text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        out[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return out


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


def mixed_workload(server):
    """What a user does, with the outcomes the metrics must then count."""
    stub = server.stub
    stub.CreateIndex(luxdb_pb2.CreateIndexRequest(name="docs", space=luxdb_pb2.L2, dim=4))
    stub.InitIndex(luxdb_pb2.InitIndexRequest(name="docs", max_elements=100))
    rng = np.random.default_rng(7)
    stub.AddItems(add_items_request("docs", rng.random((10, 4), dtype=np.float32), np.arange(10)))
    for _ in range(QUERIES):
        query(stub, "docs", rng.random((1, 4)), 3)
    with pytest.raises(grpc.RpcError) as missing:
        query(stub, "nope", rng.random((1, 4)), 3)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # Three queries over one QueryStream, signed by hand.
    stream = server.stub.QueryStream(
        iter([luxdb_pb2.QueryIndexRequest(name="docs", k=2, vectors=[0.1, 0.2, 0.3, 0.4])] * 3),
        metadata=token_metadata("/luxdb.v1.LuxDB/QueryStream"), timeout=30)
    assert len(list(stream)) == 3
    # Refused tokens: none at all, and one that is not a token.
    with grpc.insecure_channel(server.address) as channel:
        unsigned = luxdb_pb2_grpc.LuxDBStub(channel)
        for metadata in [None, [("authorization", "Bearer not-a-token")]]:
            with pytest.raises(grpc.RpcError) as refused:
                unsigned.ListIndexes(luxdb_pb2.ListIndexesRequest(), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def settled_scrape(server, condition):
    """A scrape once `condition(samples)` holds (a snapshot written, a finished call's slot
    released); fails after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        text = scrape(server.metrics_port)
        if condition(samples(text)):
            return text
        assert time.monotonic() < deadline, f"metrics never settled:\n{text}"
        time.sleep(0.1)


def after_workload(server):
    mixed_workload(server)
    return settled_scrape(server, lambda found: (
        value(found, "luxdb_calls_in_flight") == 0
        and value(found, "luxdb_index_snapshot_age_seconds", index="docs") is not None))


def test_scrape_counts_the_workload_and_passes_promtool(metrics_server):
    promtool = prometheus_binary("promtool")
    text = after_workload(metrics_server)
    found = samples(text)

    calls = lambda method, code: value(found, "luxdb_calls_total", method=method, code=code)
    assert calls("CreateIndex", "OK") == 1
    assert calls("InitIndex", "OK") == 1
    assert calls("AddItems", "OK") == 1
    assert calls("QueryIndex", "OK") == QUERIES
    assert calls("QueryIndex", "NOT_FOUND") == 1
    assert calls("QueryStream", "OK") == 3  # one per query
    assert calls("ListIndexes", "UNAUTHENTICATED") == 2
    assert value(found, "luxdb_auth_refusals_total", reason="missing") == 1
    assert value(found, "luxdb_auth_refusals_total", reason="malformed") == 1
    assert value(found, "luxdb_call_duration_seconds_count", method="QueryIndex") == QUERIES + 1
    assert value(found, "luxdb_call_duration_seconds_bucket", method="QueryIndex",
                 le="+Inf") == QUERIES + 1
    assert value(found, "luxdb_index_items", index="docs") == 10
    assert value(found, "luxdb_index_tombstones", index="docs") == 0
    assert value(found, "luxdb_index_memory_bytes", index="docs") > 0
    assert value(found, "luxdb_index_replay_backlog_items", index="docs") == 0  # snapshotted
    assert 0 <= value(found, "luxdb_index_snapshot_age_seconds", index="docs") < TIMEOUT_S
    assert value(found, "luxdb_storage_written_bytes_total") > 10 * 4 * 4
    assert value(found, "luxdb_storage_live_data_bytes") >= 0
    assert value(found, "luxdb_process_resident_memory_bytes") > 1 << 20
    # LuxDB's own series are all prefixed; the exposer_* ones are prometheus-cpp's.
    names = {name for name, _ in found}
    assert {n for n in names if not n.startswith(("luxdb_", "exposer_"))} == set()

    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=TIMEOUT_S)
    assert checked.returncode == 0, f"promtool check metrics:\n{checked.stdout}{checked.stderr}"
    # promtool does reject what breaks the conventions (so the check above can fail).
    broken = text.replace("luxdb_calls_total", "luxdb_calls")
    assert subprocess.run([promtool, "check", "metrics"], input=broken, capture_output=True,
                          text=True, timeout=TIMEOUT_S).returncode != 0

    # A deleted index's series go with it.
    metrics_server.stub.DeleteIndex(luxdb_pb2.DeleteIndexRequest(name="docs"))
    after = samples(scrape(metrics_server.metrics_port))
    assert [key for key in after if key[0].startswith("luxdb_index_")] == []
    assert value(after, "luxdb_calls_total", method="DeleteIndex", code="OK") == 1


def dashboard_queries():
    """Every PromQL query of the Grafana dashboard: panel targets and template variables."""
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return dashboard, queries


def as_promql(grafana_query):
    """A dashboard query as Prometheus takes it: Grafana's variables given values, and
    label_values(SELECTOR, LABEL) (a Grafana function) as its SELECTOR."""
    text = (grafana_query.replace("$__rate_interval", "1m").replace("$job", ".*")
            .replace("$index", ".*"))
    label_values = re.fullmatch(r"label_values\((.*), *\w+\)", text)
    return label_values.group(1) if label_values else text


def test_dashboard_uses_only_exported_metrics(metrics_server):
    dashboard, queries = dashboard_queries()
    titles = " / ".join(panel["title"] for panel in dashboard["panels"])
    for needed in ["Calls per second", "p99", "Errors", "Items per index", "Memory per index"]:
        assert needed in titles, f"no panel about {needed!r}: {titles}"
    exported = {name for name, _ in samples(after_workload(metrics_server))}
    used = {name for q in queries for name in re.findall(r"\bluxdb_[a-z0-9_]+", q)}
    assert used, "the dashboard queries no luxdb_ metric"
    assert used - exported == set(), f"the dashboard uses metrics the server does not export"


class Prometheus:
    """Debian's prometheus scraping 127.0.0.1:`target_port` every second, with its storage and
    config under `directory`, its web API on a free loopback port."""

    def __init__(self, binary, directory, target_port):
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: luxdb\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log_path = directory / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def query(self, promql):
        """The API's answer to an instant query: {"status": ..., "data": {"result": [...]}}."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:  # 400 for a query it cannot parse
            return json.load(error)

    def wait_for(self, promql, condition, what):
        """The result of `promql` once `condition(result)` holds; fails after TIMEOUT_S."""
        deadline = time.monotonic() + TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                answer = self.query(promql)
                result = answer.get("data", {}).get("result", [])
                if answer.get("status") == "success" and condition(result):
                    return result
                last = answer
            except OSError as error:  # not listening yet
                last = error
            time.sleep(0.25)
        pytest.fail(f"Prometheus never found {what} ({promql}); last answer: {last}\n"
                    f"{self.log()}", pytrace=False)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def test_real_prometheus_scrapes_the_server(metrics_server, tmp_path):
    binary = prometheus_binary("prometheus")
    after_workload(metrics_server)
    prometheus = Prometheus(binary, tmp_path, metrics_server.metrics_port)
    try:
        up = prometheus.wait_for('up{job="luxdb"}', lambda r: r and r[0]["value"][1] == "1",
                                 "the server up")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{metrics_server.metrics_port}"
        items = prometheus.wait_for('luxdb_index_items{index="docs"}', lambda r: r,
                                    "the index's items")
        assert items[0]["value"][1] == "10"
        calls = prometheus.wait_for('sum(luxdb_calls_total{method="QueryIndex"})', lambda r: r,
                                    "QueryIndex calls")
        assert float(calls[0]["value"][1]) == QUERIES + 1
        names = prometheus.wait_for('count by (__name__) ({__name__=~"luxdb_.+"})',
                                    lambda r: len(r) >= 10, "every luxdb_ series")
        assert "luxdb_call_duration_seconds_bucket" in {r["metric"]["__name__"] for r in names}
        # Every query of the dashboard is one Prometheus accepts.
        for grafana_query in dashboard_queries()[1]:
            answer = prometheus.query(as_promql(grafana_query))
            assert answer["status"] == "success", f"{grafana_query}: {answer}"
    finally:
        prometheus.stop()


def test_metrics_port_in_use_stops_the_start(luxdb_server_bin, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [luxdb_server_bin, "--insecure", "--port", "0", "--metrics-port", str(port),
             str(tmp_path / "data")],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=server_environment())
    assert result.returncode == 1, result.stderr
    assert (f"cannot serve metrics on 127.0.0.1:{port} (--metrics-port, --metrics-host): "
            "address in use") in result.stderr

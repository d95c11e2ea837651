"""A real Prometheus scrapes a real tagger with the repository's configuration.

The tagger is the service in its own uvicorn process (tests/app/servers.py) serving the bundled
model; Prometheus is Debian's `prometheus` binary with deploy/prometheus/prometheus.yml, its
target moved to the tagger on loopback and its intervals shortened to one second. After one
POST /tag, Prometheus's HTTP API must show the target up, `tagger_requests_total` scraped, the
alert rules loaded, and every query of the Grafana dashboard and of the HPA's adapter rule
answering with data.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.app.audio import encode
from tests.app.servers import ServiceProcess
from tests.deploy.dashboard import (
    adapter_query,
    dashboard_queries,
    exported_series,
    series_names,
)
from tests.deploy.tools import ROOT, require_tool

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DEFAULT_CHECKPOINT = ROOT / "model" / "weights" / "default.safetensors"
HOW = "apt-get install prometheus (Debian's package; .ci/run installs it)"
# Queries whose panels must show something after one request (the list).
MUST_HAVE_DATA = (
    "Request rate by outcome",
    "Latency percentiles (POST /tag, /tag/url)",
    "Queue depth",
    "Batch size (windows)",
    "Audio seconds per second",
)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails the test if Prometheus rejects it."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(what: str, check: Any, timeout: float = 20.0) -> Any:
    """Call `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    return require_tool("prometheus", HOW)


@pytest.fixture(scope="module")
def tagger() -> Iterator[ServiceProcess]:
    # A small batch and no torch.compile keep warm-up short; otherwise the service as deployed.
    settings = {"max_batch_windows": 4, "torch_threads": 1, "compile": "off"}
    service = ServiceProcess({"checkpoint": str(DEFAULT_CHECKPOINT), **settings})
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


def _config_for(tagger_url: str, directory: Path) -> Path:
    """The repository's configuration, pointed at `tagger_url`, scraping every second."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(CONFIG.parent / name) for name in config["rule_files"]]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "tagger"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml has no `tagger` job"
    jobs[0]["static_configs"] = [{"targets": [tagger_url.removeprefix("http://")]}]
    config["scrape_configs"] = jobs
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: Path, tagger: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    directory = tmp_path_factory.mktemp("prometheus")
    config = _config_for(tagger.url, directory)
    address = f"127.0.0.1:{_free_port()}"
    log = directory / "prometheus.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Prometheus(f"http://{address}", process, log)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail("prometheus exited:\n" + log.read_text()[-3000:])
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _poll("Prometheus to start", ready)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def tagged(tagger: ServiceProcess, prometheus: Prometheus) -> Prometheus:
    """Prometheus after the tagger answered one POST /tag and the next scrape saw it."""
    response = httpx.post(
        f"{tagger.url}/tag", files={"file": ("clip.mp3", encode("mp3", 8.0))}, timeout=60
    )
    assert response.status_code == 200, response.text

    def scraped_twice() -> list[dict[str, Any]]:
        # rate() needs two samples of a series; the request created the series it touched.
        series = 'tagger_requests_total{endpoint="/tag",outcome="ok"}'
        return prometheus.query(f"count_over_time({series}[1m]) >= 2")

    _poll("two scrapes of tagger_requests_total in Prometheus", scraped_twice)
    return prometheus


def test_the_configuration_passes_promtool() -> None:
    promtool = require_tool("promtool", HOW)
    result = subprocess.run(
        [promtool, "check", "config", CONFIG], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout + result.stderr  # the alert file was read too


def test_prometheus_scrapes_the_tagger(tagger: ServiceProcess, tagged: Prometheus) -> None:
    targets = tagged.get("/api/v1/targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [("tagger", "up")]
    assert targets[0]["scrapeUrl"] == f"{tagger.url}/metrics"
    [series] = tagged.query('tagger_requests_total{endpoint="/tag",outcome="ok"}')
    assert series["metric"]["job"] == "tagger"
    assert float(series["value"][1]) == tagger.metric(
        "tagger_requests_total", 'endpoint="/tag",outcome="ok"'
    )
    [audio] = tagged.query("tagger_audio_seconds_total")
    assert float(audio["value"][1]) >= 8.0


def test_alert_rules_load_and_evaluate(tagged: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = tagged.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r.get("health") == "ok" for r in rules) else []

    rules = _poll("every alert rule to evaluate with health ok", evaluated)
    names = {rule["name"] for rule in rules}
    assert {"TaggerDown", "TaggerNotReady", "TaggerQueueFull"} <= names
    # A healthy, ready tagger fires nothing.
    assert [rule["name"] for rule in rules if rule["state"] == "firing"] == []


def test_every_dashboard_query_runs_on_scraped_series(tagged: Prometheus) -> None:
    scraped = set(tagged.get("/api/v1/label/__name__/values"))
    queries = dashboard_queries()
    assert {q.panel for q in queries} >= set(MUST_HAVE_DATA)
    for query in queries:
        unknown = series_names(query.expr) - exported_series()
        assert not unknown, (
            f"{query.panel}: {sorted(unknown)} are not metrics of app/service/metrics.py"
        )
        result = tagged.query(query.expr)
        if query.panel in MUST_HAVE_DATA:
            assert series_names(query.expr) <= scraped, query
            assert result, f"{query.panel}: no data for {query.expr}"


def test_the_autoscaling_query_answers_per_target(tagged: Prometheus) -> None:
    # The adapter fills in label matchers and grouping for the pods of a namespace; here the
    # single scrape job stands in for them.
    [series] = tagged.query(adapter_query('job="tagger"', "job"))
    assert series["metric"] == {"job": "tagger"}
    assert float(series["value"][1]) >= 0.0

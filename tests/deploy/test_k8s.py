"""The Kubernetes manifests validate against Kubernetes's own OpenAPI schemas and fit together.

kubeconform and kubectl cannot be installed here (neither is on PyPI, npm or Debian bookworm), so
the schema check uses kubernetes-validate (PyPI), which bundles the JSON schemas generated from
the Kubernetes OpenAPI specification for each release and validates with jsonschema. Strict
mode rejects unknown fields, so a misspelt `readinesProbe` fails like it would on `kubectl
apply --validate=strict`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.service.settings import Settings
from tests.deploy.dashboard import adapter_rule, exported_series
from tests.deploy.tools import ROOT

K8S = ROOT / "deploy" / "k8s"
# The oldest release still maintained upstream and the newest the package knows.
VERSIONS = ("1.32.0", "1.37.0")


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [(name, doc) for name in kustomization["resources"] for doc in _load(K8S / name)]


def _by_kind(kind: str) -> dict[str, Any]:
    [resource] = [doc for _, doc in _resources() if doc["kind"] == kind]
    return resource


def _container() -> dict[str, Any]:
    [container] = _by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "resource"), _resources(), ids=lambda v: str(v)[:40])
def test_manifest_matches_the_kubernetes_schema(
    name: str, resource: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(_by_kind("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    manifests = {
        path.name
        for path in K8S.glob("*.yaml")
        if any("apiVersion" in doc and "kind" in doc for doc in _load(path))
        and path.name != "kustomization.yaml"
    }
    assert listed == manifests


def test_deployment_runs_one_gpu_pod_per_replica_with_probes() -> None:
    container = _container()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    [port] = container["ports"]
    assert port["containerPort"] == 8000  # the Dockerfile's EXPOSE
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # A frozen process (no answer at all) is caught by the probe's own timeout.
    assert 1 <= container["livenessProbe"]["timeoutSeconds"] <= 10
    # SIGTERM ends the process within its hard limit, before the kubelet's SIGKILL.
    hard_limit = Settings.model_fields["shutdown_hard_limit_s"].default
    assert _by_kind("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        hard_limit
    )
    startup = container["startupProbe"]
    # The startup probe must outlast the Dockerfile's healthcheck start period (model load).
    start_period = re.search(r"--start-period=(\d+)s", (ROOT / "Dockerfile").read_text())
    assert start_period is not None
    assert startup["periodSeconds"] * startup["failureThreshold"] >= int(start_period.group(1))
    pod = _by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    annotations = _by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_service_selects_the_pods() -> None:
    service = _by_kind("Service")
    pod_labels = _by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == _container()["ports"][0]["name"]


def test_hpa_scales_on_the_queue_metric_the_adapter_serves() -> None:
    hpa = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == _by_kind("Deployment")["metadata"]["name"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"  # not CPU
    rule = adapter_rule()
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    series = rule["seriesQuery"].split("{", 1)[0]
    assert series in exported_series()
    assert re.fullmatch(rule["name"]["matches"], series)
    # The adapter maps the `namespace` and `pod` labels to objects: the scrape job must set them.
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    scrape = yaml.safe_load((K8S / "prometheus.yml").read_text())
    [job] = scrape["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets

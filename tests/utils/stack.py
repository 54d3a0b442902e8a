"""The staging stack's parts for tests: its files, and real Prometheus and nginx processes
on loopback, configured from the project's own files with only the addresses changed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from perfserve.staging.prometheus import prometheus_command, write_local_config
from perfserve_common.processes import free_port, running_process

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "grafana" / "dashboards" / "perfserve.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


@contextmanager
def running_prometheus(
    targets: Mapping[str, Sequence[str]], workdir: Path, interval: str = "1s"
) -> Iterator[str]:
    """The project's Prometheus config and rules on a free loopback port, scraping
    `targets` (job name to addresses) every `interval`; yields its base URL."""
    listen = f"127.0.0.1:{free_port()}"
    config = write_local_config(
        workdir, {**targets, "prometheus": [listen]}, source=PROMETHEUS_CONFIG, interval=interval
    )
    command = prometheus_command(config, workdir / "data", listen)
    with running_process(command, f"http://{listen}/-/ready"):
        yield f"http://{listen}"


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard panel (or the dashboard's annotation)."""

    panel: str
    expr: str
    legend: str


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every query the dashboard runs: panel targets and annotation queries."""
    queries = [
        PanelQuery(panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in panels(dashboard)
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]
    queries += [
        PanelQuery(f"annotation: {annotation['name']}", annotation["expr"], "")
        for annotation in dashboard["annotations"]["list"]
        if "expr" in annotation
    ]
    return queries


def as_promql(expr: str, rate_interval: str) -> str:
    """A dashboard query as Grafana sends it with every variable at "All"."""
    for variable in ("$__rate_interval", "$__interval"):
        expr = expr.replace(variable, rate_interval)
    expr = re.sub(r"\$(variant|instance)\b", ".*", expr)
    assert "$" not in expr, f"unknown variable left in {expr}"
    return expr


def query_range(
    prometheus: str, expr: str, start: float, end: float, step: float = 1.0
) -> list[dict[str, Any]]:
    """The series `expr` returns over [start, end] through Prometheus's HTTP API."""
    response = httpx.post(
        f"{prometheus}/api/v1/query_range",
        data={"query": expr, "start": start, "end": end, "step": step},
        timeout=10.0,
    )
    answer = response.json()
    assert answer.get("status") == "success", f"{expr}: {answer}"
    series: list[dict[str, Any]] = answer["data"]["result"]
    return series


def with_data(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series that have at least one finite value."""
    return [s for s in series if any(math.isfinite(float(v)) for _, v in s["values"])]

"""The staging stack's files for tests, and reading the dashboard and Prometheus's answers
(the processes themselves start from perfserve/staging/, as `perfserve staging up` does)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "grafana" / "dashboards" / "perfserve.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


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

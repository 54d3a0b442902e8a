"""The staging stack's files for tests, and reading the dashboard and Prometheus's answers
(the processes themselves start from perfserve/staging/, as `perfserve staging up` does)."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "grafana" / "dashboards" / "perfserve.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def rules_rendered(workdir: Path, alert_for: str) -> Path:
    """A copy of the Prometheus config and its rules folder in `workdir/source`, every
    alert's `for:` set to `alert_for` (a test cannot wait ten minutes for an alert to
    fire), the rules otherwise the project's; the copied config's path."""
    source = workdir / "source"
    (source / "rules").mkdir(parents=True, exist_ok=True)
    shutil.copy(PROMETHEUS_CONFIG, source / PROMETHEUS_CONFIG.name)
    for path in RULES:
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = alert_for
        (source / "rules" / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    return source / PROMETHEUS_CONFIG.name


def firing_alerts(prometheus: str, name: str) -> list[dict[str, Any]]:
    """The alerts named `name` firing now, through Prometheus's HTTP API."""
    answer = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10.0).json()
    alerts: list[dict[str, Any]] = answer["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


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


def row_panels(dashboard: Mapping[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels under the row titled `title`, up to the next row."""
    found: list[dict[str, Any]] = []
    inside = False
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == title
            found.extend(panel.get("panels", []) if inside else [])
        elif inside:
            found.append(panel)
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


def caught_up(prometheus: str, since: float) -> bool:
    """Whether Prometheus has scraped every target and evaluated every rule group since
    `since` (`time.time()`): then a query over a run that ended then sees all of it."""
    targets = httpx.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10)
    times = [target["lastScrape"] for target in targets.json()["data"]["activeTargets"]]
    times += [group["lastEvaluation"] for group in groups.json()["data"]["groups"]]
    return bool(times) and all(datetime.fromisoformat(t).timestamp() > since for t in times)


def with_data(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series that have at least one finite value."""
    return [s for s in series if any(math.isfinite(float(v)) for _, v in s["values"])]

"""The staging stack's parts for tests: its files, and real Prometheus and nginx processes
on loopback, configured from the project's own files with only the addresses changed."""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common.processes import free_port
from staging.prometheus import prometheus_command, write_local_config

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "grafana" / "dashboards" / "perfserve.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
NGINX_CONFIG = ROOT / "nginx" / "nginx.conf"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"


@contextmanager
def running_process(
    command: Sequence[str], ready_url: str, *, timeout_s: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running until the block ends, once `ready_url` answers 200.

    Fails with the process's output if it exits or never becomes ready.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(ready_url, process, log, timeout_s)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    log.seek(0)
    output = log.read().decode(errors="replace")
    raise RuntimeError(f"{process.args!r} not ready at {url} (exit {process.poll()}):\n{output}")


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


def nginx_config(upstreams: Sequence[str], listen: str, workdir: Path) -> Path:
    """The project's nginx.conf with the replicas, the listening address and the
    temporary paths moved to this machine; everything else as the stack runs it."""
    text = NGINX_CONFIG.read_text()
    servers = "\n".join(f"        server {address};" for address in upstreams)
    text, replaced = re.subn(r"^\s*server service:8000;$", servers, text, flags=re.MULTILINE)
    assert replaced == 1, "nginx.conf should name the compose service once"
    text = text.replace("listen 8080;", f"listen {listen};").replace("/tmp/", f"{workdir}/")
    path = workdir / "nginx.conf"
    path.write_text(text)
    return path


@contextmanager
def running_nginx(upstreams: Sequence[str], workdir: Path) -> Iterator[str]:
    """nginx from the project's config in front of `upstreams`; yields its base URL."""
    listen = f"127.0.0.1:{free_port()}"
    config = nginx_config(upstreams, listen, workdir)
    command = ["nginx", "-e", "stderr", "-c", str(config), "-p", str(workdir), "-g", "daemon off;"]
    with running_process(command, f"http://{listen}/readyz"):
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

"""The staging stack on loopback, as compose runs it but without Docker.

Two replicas of the real service behind nginx (the project's config), sharing one split
file as compose's replicas share a volume, a real Prometheus with the project's config
and rules (targets rewritten to the test's ports, scraping every second), and traffic
across two variants with a canary split change sent once through the load balancer in
the middle, then a rollout started that too little traffic leaves inconclusive until it
pauses. Then every query the dashboard runs, its variables, its annotations and every
recording rule must return data for what happened.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from perfserve.staging.nginx import running_nginx
from perfserve.staging.prometheus import running_prometheus
from perfserve.staging.traffic import apply_split
from perfserve_common.processes import free_port, running_server
from service.routing import TrafficSplit
from tests.utils import ADMIN, ADMIN_TOKEN, eventually, require_tool
from tests.utils.stack import (
    COMPOSE,
    ROOT,
    RULES,
    as_promql,
    caught_up,
    load_dashboard,
    panel_queries,
    query_range,
    with_data,
)

pytestmark = pytest.mark.slow

# Grafana's $__rate_interval for 1 s scrapes is 4 s (four scrapes); one more second keeps
# two samples in every window when a scrape is late on a busy machine.
RATE_INTERVAL = "5s"
TRAFFIC_VARIANTS = {"sklearn_fp32", "onnx_int8"}
CANARY = TrafficSplit(weights={"sklearn_fp32": 0.5, "onnx_int8": 0.5}, shadow="onnx_fp32")
LOCUST_SECONDS = 16
# Against the Locust run's ~80 requests/s the judge never has enough: two short windows,
# two inconclusive verdicts per gate, then a pause, all within the run.
ROLLOUT = {
    "baseline": "sklearn_fp32",
    "candidate": "onnx_int8",
    "steps": [50, 100],
    "window_seconds": 1.5,
    "max_extensions": 1,
}


@dataclass(frozen=True)
class StackRun:
    prometheus: str
    replicas: list[str]
    loadgen: str
    start: float
    end: float

    def series(self, expr: str) -> list[dict[str, Any]]:
        return with_data(query_range(self.prometheus, expr, self.start, self.end))


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRun]:
    require_tool("prometheus")
    require_tool("nginx")
    split_file = tmp_path_factory.mktemp("split") / "traffic.json"  # compose's shared volume
    options = ["--traffic", "sklearn_fp32=0.7,onnx_int8=0.3", "--split-file", str(split_file)]
    # Drift refreshed twice a second over the few rows each replica gets, so the Drift
    # row has data (tests/staging/test_drift_alert.py shows the alert fire).
    env = {
        "PERFSERVE_ADMIN_TOKEN": ADMIN_TOKEN,
        "PERFSERVE_DRIFT_INTERVAL_S": "0.5",
        "PERFSERVE_DRIFT_MIN_ROWS": "20",
    }
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server(store, options=options, env=env)) for _ in range(2)
        ]
        replicas = [server.url.removeprefix("http://") for server in servers]
        lb = stack.enter_context(running_nginx(replicas, tmp_path_factory.mktemp("nginx")))
        loadgen = f"127.0.0.1:{free_port()}"
        prometheus = stack.enter_context(
            running_prometheus(
                {"perfserve": replicas, "loadgen": [loadgen]},
                tmp_path_factory.mktemp("prometheus"),
            )
        )
        start = time.time()
        drive(lb, [server.url for server in servers], store, loadgen)
        driven = time.time()
        eventually(lambda: caught_up(prometheus, driven), what="the last scrapes and evaluations")
        yield StackRun(prometheus, replicas, loadgen, start, time.time())


def locust_command(service: str, replace: dict[str, str], extra: Sequence[str]) -> list[str]:
    """The compose file's command for a Locust service, with its compose-only addresses
    replaced; run from the project folder, as the image runs it from its WORKDIR."""
    command: list[str] = yaml.safe_load(COMPOSE.read_text())["services"][service]["command"]
    assert command[0] == "locust"
    return (
        [str(Path(sys.executable).parent / "locust")]
        + [replace.get(part, part) for part in command[1:]]
        + list(extra)
    )


def drive(lb: str, replicas: Sequence[str], store: Path, loadgen: str) -> None:
    """A short headless Locust run through the load balancer, with the compose file's
    master and one worker: every user class of the project's locustfile at 10 requests/s
    each (5% malformed on purpose), the canary split sent through the load balancer once
    traffic flows, and a rollout started through it a few seconds later."""
    host, port = loadgen.split(":")
    master_port = str(free_port())
    master = locust_command(
        "locust-master",
        {"http://lb:8080": lb},
        ["--headless", "-u", "8", "-r", "8", "-t", f"{LOCUST_SECONDS}s", "--expect-workers", "1",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", master_port,
         "--user-rps", "10", "--bad-share", "0.05", "--store", str(store),
         "--metrics-host", host, "--metrics-port", port, "--only-summary"],
    )  # fmt: skip
    worker = locust_command(
        "locust-worker",
        {"locust-master": "127.0.0.1"},
        ["--master-port", master_port, "--store", str(store)],
    )
    with ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(2)]
        processes = [
            stack.enter_context(
                subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            )
            for command, log in zip((master, worker), logs, strict=True)
        ]
        try:
            wait_for_traffic(f"http://{loadgen}/metrics")
            # The scenario's phases: a quarter of the run on the first split, a quarter on
            # the canary's, the rest under the rollout.
            time.sleep(LOCUST_SECONDS / 4)
            apply_split(lb, CANARY, ADMIN_TOKEN, replicas)
            time.sleep(LOCUST_SECONDS / 4)
            httpx.post(f"{lb}/rollout/start", json=ROLLOUT, headers=ADMIN).raise_for_status()
            for process in processes:
                process.wait(timeout=LOCUST_SECONDS + 60)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        for process, log in zip(processes, logs, strict=True):
            log.seek(0)
            # The locustfile's gate: under 1% failures.
            assert process.returncode == 0, log.read().decode(errors="replace")


def wait_for_traffic(metrics_url: str, timeout_s: float = 60.0) -> None:
    """Until the load generator says it offers a rate (Locust takes seconds to start)."""

    def offered() -> bool:
        try:
            text = httpx.get(metrics_url, timeout=1.0).text
        except httpx.TransportError:
            return False
        return re.search(r"^perfserve_loadgen_target_rps [1-9]", text, re.MULTILINE) is not None

    eventually(offered, timeout_s, every_s=0.2, what="no load generated")


def test_every_replica_and_the_load_generator_were_scraped(run: StackRun) -> None:
    up = {(s["metric"]["job"], s["metric"]["instance"]) for s in run.series("up == 1")}
    expected = {("perfserve", replica) for replica in run.replicas} | {("loadgen", run.loadgen)}
    assert expected <= up


def test_every_dashboard_query_returns_data(run: StackRun) -> None:
    """What a user would see empty is listed, with the PromQL Grafana sent."""
    empty, partial = [], []
    for query in panel_queries(load_dashboard()):
        expr = as_promql(query.expr, RATE_INTERVAL)
        series = run.series(expr)
        if not series:
            empty.append(f"{query.panel}: {expr}")
            continue
        if "{{variant}}" in query.legend and "shadow" not in expr:
            seen = {s["metric"].get("variant") for s in series}
            if not seen >= TRAFFIC_VARIANTS:
                partial.append(f"{query.panel}: variants {seen}: {expr}")
        if "{{instance}}" in query.legend or query.panel.startswith("annotation"):
            seen = {s["metric"].get("instance") for s in series}
            if set(run.replicas) != seen:
                partial.append(f"{query.panel}: instances {seen}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert not partial, "panels missing a variant or a replica:\n" + "\n".join(partial)


def test_variables_offer_every_variant_and_replica(run: StackRun) -> None:
    for variable in load_dashboard()["templating"]["list"]:
        metric, label = variable["definition"].removeprefix("label_values(").rstrip(")").split(", ")
        values = httpx.get(
            f"{run.prometheus}/api/v1/label/{label}/values", params={"match[]": metric}
        ).json()["data"]
        expected = set(run.replicas) if label == "instance" else TRAFFIC_VARIANTS | {"onnx_fp32"}
        assert set(values) == expected, variable["name"]


def test_every_recording_rule_records_data(run: StackRun) -> None:
    records = [
        rule["record"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    assert records
    for record in records:
        series = run.series(record)
        assert series, f"{record} recorded nothing"
        if record.startswith("variant:"):
            assert {s["metric"]["variant"] for s in series} >= TRAFFIC_VARIANTS, record


def test_every_rule_evaluates_cleanly_and_replicas_agree_on_the_split(run: StackRun) -> None:
    groups = httpx.get(f"{run.prometheus}/api/v1/rules").json()["data"]["groups"]
    evaluated = [rule for group in groups for rule in group["rules"]]
    assert len(evaluated) == sum(
        len(group["rules"])
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
    )
    for rule in evaluated:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    # Both replicas follow one split file, so the divergence alert is quiet.
    diverged = next(rule for rule in evaluated if rule["name"] == "PerfserveSplitDiverged")
    assert diverged["state"] == "inactive"


def test_the_rollout_paused_for_lack_of_traffic_on_every_replica(run: StackRun) -> None:
    paused = run.series('perfserve_rollout_status{status="paused"} == 1')
    assert {s["metric"]["instance"] for s in paused} == set(run.replicas)
    verdicts = run.series("perfserve_rollout_verdicts_total")
    assert {s["metric"]["outcome"] for s in verdicts} == {"inconclusive"}


def test_the_autoscalers_queries_return_data_under_load(run: StackRun) -> None:
    """The exact PromQL of every trigger in deploy/'s ScaledObject, against this Prometheus
    scraping these replicas under load: a query that returned nothing would leave KEDA
    unable to scale (`ignoreNullValues: false` makes that an error, not a silent zero)."""
    scaled = yaml.safe_load(
        (ROOT / "deploy" / "overlays" / "keda" / "scaledobject.yaml").read_text()
    )
    triggers = scaled["spec"]["triggers"]
    assert {trigger["type"] for trigger in triggers} == {"prometheus"}
    for trigger in triggers:
        query = trigger["metadata"]["query"]
        series = run.series(query)
        assert len(series) == 1, f"{trigger['name']}: {query} gave {series}"
        values = [float(value) for _, value in series[0]["values"]]
        assert max(values) > 0, f"{trigger['name']}: {query} stayed at 0 under load"

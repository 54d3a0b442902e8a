"""The per-process side of the Locust scenarios: options, recording, metrics and the gate.

Kept out of the locustfile so that file reads as the scenarios alone. One `Harness` per
process moves what users record to the master (or keeps it, in a local run), where the
load generator's metrics are served and the quitting listener judges the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.argtypes import positive_float
from loadtests.arrivals import ARRIVAL_PROCESSES
from loadtests.bodies import holdout_rows
from loadtests.checks import status_label
from loadtests.harness import Harness
from loadtests.loadgen_metrics import DEFAULT_PORT, LoadgenMetrics
from loadtests.recorder import percentile_ms
from loadtests.report.text import latency_line
from loadtests.scenarios.gate import Limits, gate_failures
from loadtests.scenarios.pacing import LATE_TOLERANCE_S

SCENARIO_WINDOW = (0, 0)
"""Scenario runs are not stepped: everything goes into one window."""

log = logging.getLogger(__name__)
_state: dict[str, Any] = {}


def add_options(parser: Any) -> None:
    def option(flag: str, **kwargs: Any) -> None:
        env = "PERFSERVE_" + flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(flag, env_var=env, **kwargs)

    option("--store", default="model_store", help="model store whose hold-out rows are sent")
    option("--user-rps", type=positive_float, default=1.0, help="requests per second per user")
    option("--arrivals", choices=ARRIVAL_PROCESSES, default="poisson", help="gaps between sends")
    option("--batch-rows", type=int, default=16, help="rows per BatchUser request")
    option("--bad-share", type=float, default=0.01, help="share of requests malformed on purpose")
    option("--canary-users", type=int, default=1000, help="distinct X-User-Id values")
    option("--variant", default="", help="send to /models/VARIANT/predict instead of /predict")
    option("--metrics-port", type=int, default=DEFAULT_PORT, help="generator metrics; 0: off")
    option("--metrics-host", default="127.0.0.1", help="interface for the generator metrics")
    option("--max-fail-ratio", type=float, default=0.01, help="gate: highest fail ratio")
    option("--max-p95-ms", type=float, default=None, help="gate: highest p95 (scheduled time)")
    option("--max-p99-ms", type=float, default=None, help="gate: highest p99 (scheduled time)")


def start(environment: Environment) -> None:
    """Create this process's harness; on the master (or a local run) serve the metrics."""
    options = environment.parsed_options
    if options is None or environment.runner is None:
        return
    metrics = None
    if not isinstance(environment.runner, WorkerRunner):
        metrics = LoadgenMetrics()
        _state["metrics_server"] = metrics.serve(options.metrics_port, options.metrics_host)
        gevent.spawn(_offer_forever, environment, metrics)
    _state["harness"] = Harness(environment, metrics)
    _state["store"] = Path(options.store)
    rows()
    # Importing and loading took seconds before gevent's loop first ran; its cached clock
    # would make Locust's --run-time timer, set next, fire that much too early.
    gevent.get_hub().loop.update_now()


def rows() -> np.ndarray:
    """The hold-out rows, read once per process."""
    if "rows" not in _state:
        _state["rows"] = holdout_rows(_state["store"])
    found: np.ndarray = _state["rows"]
    return found


def record(variant: str, outcome: str, status: int, due: float, sent: float, done: float) -> None:
    harness: Harness = _state["harness"]
    window = harness.recorder.window(SCENARIO_WINDOW)
    window.sent += 1
    window.completed += 1
    window.late += sent - due > LATE_TOLERANCE_S
    harness.recorder.answer(
        SCENARIO_WINDOW, variant, outcome, status_label(status), done - due, done - sent
    )


def hand_over() -> None:
    """Send what is left at the end of a run (workers), so the master judges all of it."""
    harness: Harness | None = _state.get("harness")
    if harness is not None and harness.is_worker:
        harness.hand_over()


def gate(environment: Environment) -> None:
    """Set the exit code from the fail ratio and the p95/p99 limits (master or local)."""
    harness: Harness | None = _state.get("harness")
    options = environment.parsed_options
    if harness is None or harness.is_worker or options is None:
        return
    harness.hand_over()
    tally = harness.collected.window(SCENARIO_WINDOW).merged_tally()
    total = environment.stats.total
    p95, p99 = percentile_ms(tally.scheduled, 95), percentile_ms(tally.scheduled, 99)
    limits = Limits(options.max_fail_ratio, options.max_p95_ms, options.max_p99_ms)
    broken = gate_failures(total.num_requests, total.fail_ratio, p95, p99, limits)
    print(latency_line("from scheduled time", tally.scheduled))
    print(latency_line("from actual send   ", tally.sent))
    if broken:
        log.error("load test gate failed: %s", "; ".join(broken))
        environment.process_exit_code = 1
    else:
        log.info("load test gate passed")


def _offer_forever(environment: Environment, metrics: LoadgenMetrics) -> None:
    """Keep `perfserve_loadgen_target_rps` at users times the per-user rate."""
    rate = environment.parsed_options.user_rps if environment.parsed_options else 0.0
    while True:
        runner = environment.runner
        metrics.target_rps.set((runner.user_count if runner else 0) * rate)
        gevent.sleep(1.0)

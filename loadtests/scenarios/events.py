"""The per-process side of the Locust scenarios: options, recording, metrics and the gate.

Kept out of the locustfile so that file reads as the scenarios alone. One `Harness` per
process moves what users record to the master (or keeps it, in a local run), where the
load generator's metrics are served and the quitting listener judges the run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.argtypes import body_mix, positive_float, protocol
from loadtests.arrivals import ARRIVAL_PROCESSES
from loadtests.bodies import BODIES_HELP, holdout_rows
from loadtests.checks import status_label
from loadtests.harness import Harness
from loadtests.loadgen_metrics import DEFAULT_PORT, LoadgenMetrics
from loadtests.recorder import percentile_ms
from loadtests.report.text import latency_line
from loadtests.scenarios.gate import Limits, gate_failures
from loadtests.scenarios.pacing import LATE_TOLERANCE_S
from loadtests.shift import shift_specs
from perfserve_common.usage import UsageError

SCENARIO_WINDOW = (0, 0)
"""Scenario runs are not stepped: everything goes into one window."""

log = logging.getLogger(__name__)
_state: dict[str, Any] = {}


def add_options(parser: Any) -> None:
    """The scenarios' options, each with its default and the variable it also reads."""

    def option(flag: str, help: str, **kwargs: Any) -> None:
        env = "PERFSERVE_" + flag.lstrip("-").replace("-", "_").upper()
        given = kwargs.get("default")
        default = "" if given in (None, "", ()) else f"default: {given}; "
        parser.add_argument(flag, env_var=env, help=f"{help} ({default}env {env})", **kwargs)

    option("--store", "Model store whose hold-out rows are sent.", default="model_store")
    option(
        "--shift",
        "Scale features of every row sent, FEATURE=SCALE[,FEATURE=SCALE...]: shifted "
        "traffic for the service's drift metrics and alert (loadtests/shift.py).",
        type=shift_specs,
        default=(),
    )
    option("--user-rps", "Requests per second each user sends.", type=positive_float, default=1.0)
    option(
        "--arrivals",
        "How gaps between a user's sends are drawn: poisson (random) or constant.",
        choices=ARRIVAL_PROCESSES,
        default="poisson",
    )
    option("--batch-rows", "Rows in each BatchUser request.", type=int, default=16)
    option("--bodies", BODIES_HELP + " Each user sends its bodies in turn.", type=body_mix,
           default="distinct")  # fmt: skip
    option(
        "--bad-share",
        "Share of requests malformed on purpose; they must come back 4xx.",
        type=float,
        default=0.01,
    )
    option("--canary-users", "Distinct X-User-Id values CanaryUser sends.", type=int, default=1000)
    option("--variant", "Send to /models/VARIANT/predict instead of /predict.", default="")
    option(
        "--protocol",
        "How to ask for predictions: perfserve, v1 (KServe) or v2 (Open Inference Protocol); "
        "with v1 or v2, --variant names the target's model.",
        type=protocol,
        default="perfserve",
    )
    option("--url", "Base URL of the target; the same as --host.", default="")
    option(
        "--metrics-port",
        "Port for the generator's Prometheus metrics (0: none).",
        type=int,
        default=DEFAULT_PORT,
    )
    option("--metrics-host", "Interface the generator's metrics listen on.", default="127.0.0.1")
    option("--max-fail-ratio", "Gate: highest share of failed requests.", type=float, default=0.01)
    option("--max-p95-ms", "Gate: highest p95 in ms, from the scheduled time.", type=float)
    option("--max-p99-ms", "Gate: highest p99 in ms, from the scheduled time.", type=float)


def start(environment: Environment) -> None:
    """Create this process's harness; on the master (or a local run) serve the metrics."""
    options = environment.parsed_options
    if options is None or environment.runner is None:
        return
    if options.url:
        environment.host = options.url
        for user_class in environment.user_classes:
            user_class.host = options.url
    metrics = None
    if not isinstance(environment.runner, WorkerRunner):
        metrics = LoadgenMetrics()
        _state["metrics_server"] = metrics.serve(options.metrics_port, options.metrics_host)
        gevent.spawn(_offer_forever, environment, metrics)
    _state["harness"] = Harness(environment, metrics)
    _state["store"] = Path(options.store)
    _state["shift"] = tuple(options.shift or ())
    try:
        rows()
    except UsageError as error:  # --shift names a feature the model lacks: one line, exit 2
        print(f"locust: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    # Importing and loading took seconds before gevent's loop first ran; its cached clock
    # would make Locust's --run-time timer, set next, fire that much too early.
    gevent.get_hub().loop.update_now()


def rows() -> np.ndarray:
    """The hold-out rows (shifted as `--shift` says), read once per process."""
    if "rows" not in _state:
        _state["rows"] = holdout_rows(_state["store"], _state["shift"])
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

"""`perfserve sweep`: each target in turn, its knee, and optionally stress and a soak.

A target is one variant (`POST /models/{variant}/predict`) or the live traffic split
(`POST /predict`, sticky user ids). The engine (native by default, or Locust; see
loadtests/engines/base.py) is started once and reused for every target; its metrics are
served for the whole run. With `calibrate`, the generators first measure their own
ceiling against the bare HTTP floor (loadtests/sweep/calibration.py), and every step is
judged against it. Before every step that starts idle, the server's core is read with a
fixed loop (perfserve_common/core_speed.py), and each step's reading is reported as a share of the
fastest in the run: a knee is only as steady as the machine under it.

The sweep runs in rounds, the targets taking turns step by step (loadtests/sweep/
rounds.py): each knee gets an interval from the rounds, each pair of targets a
comparison with a confidence interval, and the run is called inconclusive when the
core's speed moved by more than a knee's interval (loadtests/sweep/intervals.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from loadtests import SPLIT
from loadtests.bodies import DISTINCT, BodyMix, holdout_rows, mixed_bodies
from loadtests.engines.base import Engine, EngineName
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.shift import Shift
from loadtests.sweep.calibration import Calibration, calibrate
from loadtests.sweep.conditions import run_conditions
from loadtests.sweep.endurance import SoakReport, StressReport, soak, stress
from loadtests.sweep.intervals import (
    KneeComparison,
    KneeInterval,
    every_pair,
    inconclusive_reason,
    knee_interval,
)
from loadtests.sweep.knee import Knee, knee_of
from loadtests.sweep.results import StepResult
from loadtests.sweep.rounds import RoundsPlan, run_rounds
from loadtests.sweep.server_metrics import CLIENT_SIDE_ONLY, exports_perfserve_metrics, scrape
from loadtests.sweep.steps import RunContext, StepRunner, StepSettings
from perfserve_common.protocols import ProtocolName


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, made once before it runs (perfserve/cli/sweep.py from the
    command line and the target's facts, or `perfserve demo`) and never changed: what the
    run measures on the way (the server's CPU, the generator's ceiling) goes into its
    `RunContext` and its report."""

    url: str
    targets: list[str]
    rates: list[float] | None
    """Fixed rates; None searches for the knee (doubling, then bisection)."""
    steps: StepSettings
    store: Path
    start_rate: float = 100.0
    max_rate: float = 50_000.0
    precision: float = 0.1
    rounds: int = 1
    """Rounds of the search (or of the fixed rates), the targets interleaved in each."""
    rows_per_request: int = 1
    bodies: BodyMix = DISTINCT
    """How the bodies repeat rows (`--bodies`)."""
    sweep: bool = True
    stress: bool = False
    soak_rate: float | None = None
    soak_seconds: float = 600.0
    engine: EngineName = "native"
    generators: int = 1
    """Native generator processes (one per core)."""
    generator_cpus: list[int] | None = None
    """CPUs to pin the native generators to, in turn; None: not pinned."""
    calibrate: bool = False
    workers: int = 0
    """Locust worker processes (0: the Locust engine generates in the sweep's process)."""
    max_in_flight: int = 256
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    split_weights: dict[str, float] = field(default_factory=dict)
    """The live split when the run started (for the report)."""
    model_versions: dict[str, str] = field(default_factory=dict)
    """Each model's version as the target reported it when the run was planned (for the
    report's conditions; loadtests/targets.py)."""
    protocol: ProtocolName = "perfserve"
    """How the target is asked for predictions (see common/protocols.py)."""
    shift: Shift = ()
    """Features scaled in every row sent (loadtests/shift.py)."""


@dataclass
class TargetReport:
    target: str
    steps: list[StepResult]
    """Every sweep step, round after round."""
    knee: Knee
    """The median round's knee (see `interval`)."""
    rounds: list[Knee] = field(default_factory=list)
    """Each round's knee, in order."""
    interval: KneeInterval | None = None
    stress: StressReport | None = None
    soak: SoakReport | None = None

    @classmethod
    def from_rounds(cls, target: str, rounds: list[list[StepResult]]) -> TargetReport:
        """The report of a target's rounds: its knee is the median round's."""
        knees = [knee_of(steps) for steps in rounds] or [knee_of([])]
        interval = knee_interval(knees)
        steps = [step for steps in rounds for step in steps]
        return cls(target, steps, knees[interval.median_round], knees, interval)

    def all_steps(self) -> list[StepResult]:
        extra: list[StepResult] = []
        if self.stress is not None:
            extra += self.stress.steps
            extra += [self.stress.recovery] if self.stress.recovery else []
        if self.soak is not None:
            extra.append(self.soak.step)
        return self.steps + extra


@dataclass
class SweepReport:
    plan: SweepPlan
    targets: list[TargetReport]
    calibration: Calibration | None = None
    conditions: dict[str, Any] = field(default_factory=dict)
    """Date, machine, code and model versions, placement (see sweep/conditions.py)."""
    comparisons: list[KneeComparison] = field(default_factory=list)
    inconclusive_reason: str | None = None
    """Why the machine moved too much to support the knees; None when it did not."""
    server_metrics: bool = True
    """Whether the target exports perfserve's metrics (else only client-side figures)."""

    @property
    def conclusive(self) -> bool:
        return self.inconclusive_reason is None

    @property
    def generator_ceiling_qps(self) -> float | None:
        """The generator's calibrated ceiling; None when it was not measured."""
        return self.calibration.ceiling_qps if self.calibration else None

    @property
    def fastest_core_rate(self) -> float | None:
        """The fastest reading of the server's core in the whole run (see
        `_share_of_fastest`); None when the core was not read."""
        read = self.conditions.get("core_speed") or {}
        fastest: float | None = read.get("fastest_rate")
        return fastest


def core_share(core_rate: float | None, fastest_rate: float | None) -> float | None:
    """A step's `core_rate` as a share of the fastest read in the whole run (its core
    speed): below 1, the machine itself ran slower than it could, and the server's capacity
    with it. None when the core was not read."""
    if core_rate is None or fastest_rate is None:
        return None
    return core_rate / fastest_rate


def start_engine(plan: SweepPlan, url: str, metrics: LoadgenMetrics) -> Engine:
    """The plan's engine, aimed at `url`. Locust is imported only when it is chosen (it
    patches the process with gevent)."""
    if plan.engine == "locust":
        from loadtests.engines.locust_engine import Driver

        return Driver(url, plan.workers, plan.max_in_flight, metrics)
    from loadtests.engines.native import NativeEngine

    return NativeEngine(url, plan.generators, plan.max_in_flight, metrics, plan.generator_cpus)


def _other_cpus(generator_cpus: list[int] | None) -> str | None:
    """The CPUs the generators are not pinned to (for the bare server), as taskset takes them."""
    if not generator_cpus:
        return None
    rest = sorted(os.sched_getaffinity(0) - set(generator_cpus))
    return ",".join(map(str, rest)) or None


def run_sweep(plan: SweepPlan, progress: Callable[[str], None]) -> SweepReport:
    """The plan run: first what every step needs besides the plan (the conditions, the
    generator's ceiling when asked: a `RunContext`), then the steps, each measured and
    judged (loadtests/sweep/steps.py), then the run judged as a whole (`_judged`)."""
    rows = holdout_rows(plan.store, plan.shift)
    bodies = mixed_bodies(plan.bodies, rows, plan.rows_per_request, plan.protocol)
    server_metrics = exports_perfserve_metrics(scrape(plan.url))
    if not server_metrics:
        progress(CLIENT_SIDE_ONLY)
    conditions = run_conditions(plan.url, plan.model_versions, plan.generator_cpus)
    calibration = _calibrated(plan, bodies, progress) if plan.calibrate else None
    server_cpus = conditions["server_cpus"]
    context = RunContext(
        server_cpu=server_cpus[0] if server_cpus else None,
        generator_ceiling_qps=calibration.ceiling_qps if calibration else None,
    )
    metrics = LoadgenMetrics()
    server = metrics.serve(plan.metrics_port, plan.metrics_host)
    driver = start_engine(plan, plan.url, metrics)
    try:
        reports = _run_targets(plan, context, driver, bodies, progress)
    finally:
        driver.close()
        if server is not None:
            server.shutdown()
    conditions["core_speed"] = _share_of_fastest(reports, context.server_cpu)
    return _judged(
        SweepReport(plan, reports, calibration, conditions, server_metrics=server_metrics)
    )


def _calibrated(
    plan: SweepPlan, bodies: list[bytes], progress: Callable[[str], None]
) -> Calibration:
    """The generator's ceiling against the bare HTTP floor (`--calibrate`)."""
    progress(f"calibrating the {plan.engine} engine against the bare HTTP floor ...")
    engine = partial(start_engine, plan, metrics=LoadgenMetrics())  # not served
    calibration = calibrate(engine, bodies, _other_cpus(plan.generator_cpus))
    progress(f"  generator ceiling: {calibration.ceiling_qps:,.0f}/s")
    return calibration


def _judged(report: SweepReport) -> SweepReport:
    """The report with its comparisons and whether the machine held still enough."""
    rounds = {t.target: t.rounds for t in report.targets if t.rounds}
    report.comparisons = every_pair(rounds) if len(rounds) > 1 else []
    read = report.conditions.get("core_speed") or {}
    intervals = {t.target: t.interval for t in report.targets if t.interval is not None}
    report.inconclusive_reason = inconclusive_reason(read.get("between_rounds_share"), intervals)
    return report


def _run_targets(
    plan: SweepPlan,
    context: RunContext,
    driver: Engine,
    bodies: list[bytes],
    progress: Callable[[str], None],
) -> list[TargetReport]:
    """The rounds, every target in turn in each; then each target's stress and soak."""
    runners = {
        target: StepRunner(
            driver,
            plan.url,
            target,
            None if target == SPLIT else [target],
            plan.steps,
            progress,
            context,
        )
        for target in plan.targets
    }

    def aim(target: str) -> StepRunner:
        """The target's runner, the driver aimed at it (the targets alternate step by
        step, so this is every step; it costs milliseconds)."""
        driver.setup(bodies, plan.rows_per_request, target, plan.protocol)
        return runners[target]

    rounds: dict[str, list[list[StepResult]]] = {t: [] for t in plan.targets}
    if plan.sweep:
        progress(f"sweeping {', '.join(plan.targets)} (SLO p99 {plan.steps.slo_p99_ms:g} ms)")
        rounds_plan = RoundsPlan(
            plan.rounds, plan.start_rate, plan.max_rate, plan.precision, plan.rates
        )
        rounds = run_rounds(
            plan.targets, rounds_plan, lambda t, r, n: aim(t).run(r, round_number=n), progress
        )
    reports = []
    for target in plan.targets:
        report = TargetReport.from_rounds(target, rounds[target])
        _endure(plan, aim(target), report, progress)
        reports.append(report)
    return reports


def _share_of_fastest(reports: list[TargetReport], cpu: int | None) -> dict[str, Any] | None:
    """For the report's conditions: the CPU read, the fastest rate (each step's share of it
    is its core speed, `core_share`), the slowest single reading's share, and the median
    share of each round of the search (None when nothing was read).

    A knee is found in a round and its interval spans the rounds, so what can move a knee
    unseen is the machine running at another speed from one round to the next; one 0.3 s
    reading caught by a burst on the host says little about the seconds of steps around it.
    `between_rounds_share` (the slowest round's median over the fastest's) measures the
    first; `slowest_share` still shows the second."""
    read = [(s, s.core_rate) for r in reports for s in r.all_steps() if s.core_rate is not None]
    if not read:
        return None
    fastest = max(rate for _, rate in read)
    by_round: dict[int, list[float]] = {}
    for step, rate in read:
        if step.phase == "sweep":
            by_round.setdefault(step.round, []).append(rate / fastest)
    round_shares = {n: median(shares) for n, shares in sorted(by_round.items())}
    return {
        "cpu": cpu,
        "fastest_rate": fastest,
        "slowest_share": min(rate for _, rate in read) / fastest,
        "readings": len(read),
        "round_median_shares": list(round_shares.values()),
        "between_rounds_share": (
            min(round_shares.values()) / max(round_shares.values())
            if len(round_shares) > 1
            else None
        ),
    }


def _endure(
    plan: SweepPlan, runner: StepRunner, report: TargetReport, progress: Callable[[str], None]
) -> None:
    """Stress past the knee and the soak, when asked for."""
    target = runner.target
    # Stress starts from the knee, or from the lowest rate swept when none held.
    base = report.knee.qps or min((s.target_qps for s in report.steps), default=None)
    if plan.stress and base:
        progress(f"{target}: stress past {base:,.0f}/s")
        report.stress = stress(runner, base, plan.max_rate)
    if plan.soak_rate:
        progress(f"{target}: soak at {plan.soak_rate:,.0f}/s for {plan.soak_seconds:g} s")
        report.soak = soak(runner, plan.soak_rate, plan.soak_seconds)


def describe_plan(plan: SweepPlan) -> dict[str, Any]:
    """The settings a reader needs to reproduce the run."""
    s = plan.steps
    return {
        "url": plan.url,
        "store": str(plan.store),
        "targets": plan.targets,
        "rates": plan.rates or "auto",
        "arrivals": s.arrivals,
        "step_seconds": s.step_seconds,
        "window_seconds": s.window_seconds,
        "warmup_seconds": s.warmup_seconds or s.window_seconds,
        "max_step_seconds": s.max_step_seconds,
        "rounds": plan.rounds,
        "precision": plan.precision,
        "rows_per_request": plan.rows_per_request,
        "bodies": str(plan.bodies),
        "engine": plan.engine,
        "generators": plan.workers if plan.engine == "locust" else plan.generators,
        "generator_cpus": plan.generator_cpus,
        "workers": plan.workers,
        "max_in_flight": plan.max_in_flight,
        "split_weights": plan.split_weights,
        "protocol": plan.protocol,
        "shift": {feature: scale for feature, scale in plan.shift},
    }

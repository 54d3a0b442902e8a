"""Past the knee and for a long time: the breaking point, recovery, and a soak.

Stress raises the rate past the knee until the service breaks (most requests fail or
goodput collapses) and reports how it degraded: load shed with 503 (what a bounded
queue should do), timeouts (504, or no answer), or errors. The rate then drops at once
to half the knee, with no pause to let the queue drain, and short windows time how long
p99 takes to come back under the SLO. A soak holds one rate for a long time and watches
the server's resident memory for growth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.results import StepResult
from loadtests.sweep.steps import StepRunner

STRESS_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
BROKEN_FAILURE_SHARE = 0.5
RECOVERY_WINDOW_S = 0.5
RECOVERY_MIN_S = 5.0
"""The recovery step lasts twice a step, at least this long."""


@dataclass
class StressReport:
    steps: list[StepResult]
    breaking_qps: float | None
    """The first rate at which the service broke; None if it held up to the last factor."""
    degradation: list[dict[str, float]] = field(default_factory=list)
    recovery: StepResult | None = None
    recovery_s: float | None = None
    """Seconds after the load dropped until p99 stayed under the SLO; None if it never did."""


def broken(step: StepResult) -> bool:
    counts = step.totals
    failures = counts.shed + counts.errors + counts.dropped
    return failures > BROKEN_FAILURE_SHARE * max(1, counts.requests) or (
        step.client.achieved_qps < BROKEN_FAILURE_SHARE * step.target_qps
    )


def degradation(step: StepResult) -> dict[str, float]:
    """Per second over the step: goodput, shed, timeouts and other errors."""
    statuses = step.totals.statuses
    seconds = max(step.duration_s, 1e-9)
    timeouts = statuses.get("504", 0) + statuses.get("no_answer", 0)
    return {
        "offered_qps": step.target_qps,
        "goodput_qps": step.totals.ok / seconds,
        "shed_qps": step.totals.shed / seconds,
        "timeout_qps": timeouts / seconds,
        "error_qps": (step.totals.errors - timeouts) / seconds,
        "p99_ms": step.client.p99_ms,
    }


def stress(runner: StepRunner, knee_qps: float, max_rate: float) -> StressReport:
    steps: list[StepResult] = []
    breaking = None
    for factor in STRESS_FACTORS:
        rate = min(knee_qps * factor, max_rate)
        steps.append(runner.run(rate, "stress", extend=False, drain=False))
        if broken(steps[-1]) or steps[-1].verdict == StepVerdict.GENERATOR_BOUND:
            breaking = rate if broken(steps[-1]) else None
            break
        if rate >= max_rate:
            break
    recovery = runner.run(
        knee_qps / 2,
        "recovery",
        seconds=max(RECOVERY_MIN_S, 2 * runner.settings.step_seconds),
        window_s=RECOVERY_WINDOW_S,
        extend=False,
        warmup=False,
    )
    return StressReport(
        steps,
        breaking,
        [degradation(s) for s in steps],
        recovery,
        recovery_seconds(recovery, runner.settings.slo_p99_ms),
    )


def recovery_seconds(step: StepResult, slo_ms: float) -> float | None:
    """Time from the drop until every later window kept p99 under the SLO, no failures
    (the recovery step measures from its first window on)."""
    good = [
        p99 <= slo_ms and misses <= 0.01
        for p99, misses in zip(step.window_p99_ms, step.window_miss_ratio, strict=True)
    ]
    for index in range(len(good)):
        if all(good[index:]):
            return index * step.window_s
    return None


@dataclass
class SoakReport:
    step: StepResult
    rss_start_mb: float
    rss_end_mb: float
    rss_slope_mb_per_hour: float


def soak(runner: StepRunner, rate: float, seconds: float) -> SoakReport:
    window_s = max(1.0, seconds / 60)
    step = runner.run(rate, "soak", seconds=seconds, window_s=window_s, extend=False)
    return soak_report(step)


def soak_report(step: StepResult) -> SoakReport:
    """Memory at the start and end of the soak and its trend (least squares)."""
    times = np.array([t for t, _ in step.rss_mb])
    rss = np.array([mb for _, mb in step.rss_mb])
    if len(rss) < 2:
        nan = float("nan")
        return SoakReport(step, nan, nan, nan)
    slope_per_s = float(np.polyfit(times, rss, 1)[0])
    return SoakReport(step, float(rss[0]), float(rss[-1]), slope_per_s * 3600)

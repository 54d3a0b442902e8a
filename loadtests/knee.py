"""Finding the knee: the highest rate that still holds the p99 SLO.

Widen by doubling from a start rate until a step fails, then bisect between the last
rate that held and the first that did not, until they are within `precision` of each
other. A step whose shortfall is the generator's (not the server's) ends the search:
the knee is then only known to be at least the last rate that held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtests.results import StepResult

GENERATOR_BOUND = "generator-bound"
MAX_HALVINGS = 4


@dataclass(frozen=True)
class Knee:
    qps: float | None
    """The highest rate that held, with every lower rate holding too; None if none held."""
    limited_by: str
    """slo (a higher rate failed), generator (a higher rate was generator-bound),
    max-rate (every rate tried held) or none-held."""
    step: StepResult | None = None
    """The step at the knee."""


def knee_of(steps: Sequence[StepResult]) -> Knee:
    """The knee among measured steps: below the lowest rate that did not hold."""
    failing = [s.target_qps for s in steps if not s.holds and s.verdict != GENERATOR_BOUND]
    bound = [s.target_qps for s in steps if s.verdict == GENERATOR_BOUND]
    ceiling = min([*failing, *bound], default=float("inf"))
    held = [s for s in steps if s.holds and s.target_qps < ceiling]
    if not held:
        return Knee(None, "none-held")
    best = max(held, key=lambda s: s.target_qps)
    if ceiling == float("inf"):
        limited_by = "max-rate"
    elif failing and min(failing) == ceiling:
        limited_by = "slo"
    else:
        limited_by = "generator"
    return Knee(min(best.target_qps, best.client.achieved_qps), limited_by, best)


def fixed_rates(measure: Callable[[float], StepResult], rates: Sequence[float]) -> list[StepResult]:
    """Each rate in turn, stopping after the first that does not hold (past it the
    server is only being overloaded further)."""
    steps = []
    for rate in rates:
        steps.append(measure(rate))
        if not steps[-1].holds:
            break
    return steps


def search(
    measure: Callable[[float], StepResult],
    start: float,
    max_rate: float,
    precision: float = 0.1,
    max_steps: int = 14,
) -> list[StepResult]:
    """Doubling, then bisection; returns every step measured, in order."""
    steps: list[StepResult] = []
    held: float | None = None
    failed: float | None = None
    rate = min(start, max_rate)
    halvings = 0
    while len(steps) < max_steps:
        step = measure(rate)
        steps.append(step)
        if step.verdict == GENERATOR_BOUND:
            break
        if step.holds:
            held = rate
        else:
            failed = rate if failed is None else min(failed, rate)
        if failed is None:
            if rate >= max_rate:
                break
            rate = min(2 * rate, max_rate)
        elif held is None:
            halvings += 1
            if halvings > MAX_HALVINGS:
                break
            rate /= 2
        elif (failed - held) / held <= precision:
            break
        else:
            rate = round((held + failed) / 2)
    return steps

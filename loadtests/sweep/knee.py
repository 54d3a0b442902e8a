"""Finding the knee: the highest rate that still holds the p99 SLO.

Widen by doubling from a start rate until a step fails, then bisect between the last
rate that held and the first that did not, until they are within `precision` of each
other. A rate the generator cannot offer (generator-bound twice) says nothing of the
server, so the search bisects below it: a lower rate may still fail by the SLO, and
then the knee is the server's; if every rate up to it holds, the knee is only known to
be at least the last rate that held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from loadtests.sweep.results import StepResult

GENERATOR_BOUND = "generator-bound"
INCONCLUSIVE = ("unstable", "too-few-answers")
SAYS_NOTHING = (GENERATOR_BOUND, *INCONCLUSIVE)
"""Verdicts that tell nothing of the server: measured once more, then the search ends."""
LIMITS = {"generator-bound": "generator", "unstable": "unstable", "too-few-answers": "unstable"}
MAX_HALVINGS = 4
MAX_STEPS = 14
"""Most steps one knee search measures."""
T = TypeVar("T")
LOWER_BOUND_LIMITS = ("generator", "unstable", "max-rate")


@dataclass(frozen=True)
class Knee:
    qps: float | None
    """The highest rate that held, with every lower rate holding too; None if none held."""
    limited_by: str
    """slo (a higher rate missed the SLO or saturated the server), generator (a higher
    rate was generator-bound), unstable (a higher rate gave no trustworthy answer),
    max-rate (every rate tried held) or none-held."""
    step: StepResult | None = None
    """The step at the knee."""

    @property
    def is_lower_bound(self) -> bool:
        """Something other than the server's SLO ended the search (the generator, an
        untrustworthy step, the top of the rates tried): the server may hold more."""
        return self.qps is not None and self.limited_by in LOWER_BOUND_LIMITS


def knee_of(steps: Sequence[StepResult]) -> Knee:
    """The knee among measured steps: the highest rate that held below the lowest rate
    that did not, whatever the reason it did not. A rate measured again counts by its
    last measurement."""
    latest = list({s.target_qps: s for s in steps}.values())
    ceiling = min((s for s in latest if not s.holds), key=lambda s: s.target_qps, default=None)
    limit = ceiling.target_qps if ceiling else float("inf")
    held = [s for s in latest if s.holds and s.target_qps < limit]
    if not held:
        return Knee(None, "none-held")
    best = max(held, key=lambda s: s.target_qps)
    limited_by = "max-rate" if ceiling is None else LIMITS.get(ceiling.verdict, "slo")
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
    max_steps: int = MAX_STEPS,
) -> list[StepResult]:
    """Doubling, then bisection; returns every step measured, in order.

    A step that says nothing of the server, generator-bound or inconclusive (unstable,
    too few answers), is measured once more: a stall of the machine that made the
    generator late once, or one step's noise, should not end the search. If it says
    nothing again it is not read as a failure of the server: an inconclusive rate ends
    the search there, and a generator-bound one becomes the top of the bisection, which
    goes on below it while some rate has held."""
    steps: list[StepResult] = []
    held: float | None = None
    failed: float | None = None
    rate = min(start, max_rate)
    halvings = 0
    while len(steps) < max_steps:
        step = measure(rate)
        steps.append(step)
        if step.verdict in SAYS_NOTHING and len(steps) < max_steps:
            step = measure(rate)
            steps.append(step)
        if step.verdict in INCONCLUSIVE or (step.verdict == GENERATOR_BOUND and held is None):
            break
        if step.holds:
            held = rate
        else:
            failed = rate if failed is None else min(failed, rate)
        if (failed is None and rate >= max_rate) or (held is None and halvings >= MAX_HALVINGS):
            break
        halvings += failed is not None and held is None
        following = next_rate(rate, held, failed, precision)
        if following is None:
            break
        rate = min(following, max_rate)
    return steps


def next_rate(
    rate: float, held: float | None, failed: float | None, precision: float
) -> float | None:
    """The next rate to try: double until one fails, halve while none has held, then
    bisect between the highest that held and the lowest that failed; None once they are
    within `precision` of each other."""
    if failed is None:
        return 2 * rate
    if not held:
        return rate / 2
    if (failed - held) / held <= precision:
        return None
    return round((held + failed) / 2)


def climb(
    measure: Callable[[float], T],
    holds: Callable[[T], bool],
    start: float,
    max_rate: float,
    precision: float,
    max_runs: int,
) -> tuple[float, list[T]]:
    """The simple search (`next_rate` alone, no re-measuring): the highest rate that held
    (0 if none) and every measurement, for the generator's calibration and for checking
    a knee with another tool."""
    measured: list[T] = []
    held, failed, rate = 0.0, None, start
    while rate <= max_rate and len(measured) < max_runs:
        result = measure(rate)
        measured.append(result)
        if holds(result):
            held = max(held, rate)
        else:
            failed = rate if failed is None else min(failed, rate)
        following = next_rate(rate, held, failed, precision)
        if following is None:
            break
        rate = following
    return held, measured

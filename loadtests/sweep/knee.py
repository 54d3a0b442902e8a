"""Finding the knee: the highest rate that still holds the p99 SLO.

Widen by doubling from a start rate until a step fails, then bisect between the last
rate that held and the first that did not, until they are within `precision` of each
other. A rate the generator cannot offer (generator-bound twice) says nothing of the
server, so the search bisects below it: a lower rate may still fail by the SLO, and
then the knee is the server's; if every rate up to it holds, the knee is only known to
be at least the last rate that held.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.results import StepResult

GENERATOR_BOUND = StepVerdict.GENERATOR_BOUND
INCONCLUSIVE = (StepVerdict.UNSTABLE, StepVerdict.TOO_FEW_ANSWERS)
SAYS_NOTHING = (GENERATOR_BOUND, *INCONCLUSIVE)
"""Verdicts that tell nothing of the server: measured once more, then the search ends."""
LIMITS = {
    StepVerdict.GENERATOR_BOUND: "generator",
    StepVerdict.UNSTABLE: "unstable",
    StepVerdict.TOO_FEW_ANSWERS: "unstable",
}
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
    ceiling_qps: float | None = None
    """The lowest rate that did not hold (above the knee); None when every rate held."""

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
    top = ceiling.target_qps if ceiling else None
    if not held:
        return Knee(None, "none-held", ceiling_qps=top)
    best = max(held, key=lambda s: s.target_qps)
    limited_by = "max-rate" if ceiling is None else LIMITS.get(ceiling.verdict, "slo")
    return Knee(min(best.target_qps, best.client.achieved_qps), limited_by, best, top)


class RateSequence(Protocol):
    """The rates one target is measured at, one step at a time: the caller asks for the
    next rate, measures it, and hands the step back. Several targets' sequences then
    interleave step by step (loadtests/sweep/rounds.py), so drift in the machine's own
    speed hits all of them alike."""

    steps: list[StepResult]

    def next_rate(self) -> float | None:
        """The rate to measure next; None once the sequence is done."""
        ...

    def record(self, step: StepResult) -> None: ...


class FixedRates:
    """Each rate in turn, stopping after the first that does not hold (past it the
    server is only being overloaded further)."""

    def __init__(self, rates: Sequence[float]) -> None:
        self.steps: list[StepResult] = []
        self._rates = list(rates)

    def next_rate(self) -> float | None:
        if len(self.steps) >= len(self._rates) or (self.steps and not self.steps[-1].holds):
            return None
        return self._rates[len(self.steps)]

    def record(self, step: StepResult) -> None:
        self.steps.append(step)


class KneeSearch:
    """Growth by `factor` (doubling by default), then bisection.

    A step that says nothing of the server, generator-bound or inconclusive (unstable,
    too few answers), is measured once more: a stall of the machine that made the
    generator late once, or one step's noise, should not end the search. If it says
    nothing again it is not read as a failure of the server: an inconclusive rate ends
    the search there, and a generator-bound one becomes the top of the bisection, which
    goes on below it while some rate has held. A later round starts at the knee an
    earlier round found, with a smaller factor, so that it brackets the knee in a step or
    two and spends its steps on the bisection."""

    def __init__(
        self,
        start: float,
        max_rate: float,
        precision: float = 0.1,
        max_steps: int = MAX_STEPS,
        factor: float = 2.0,
    ) -> None:
        self.steps: list[StepResult] = []
        self.max_rate = max_rate
        self.precision = precision
        self.max_steps = max_steps
        self.factor = factor
        # As far down as MAX_HALVINGS halvings would go, whatever the factor.
        self.max_shrinks = math.ceil(MAX_HALVINGS * math.log(2) / math.log(factor))
        self.held: float | None = None
        self.failed: float | None = None
        self._rate: float | None = min(start, max_rate)
        self._shrinks = 0
        self._retrying = False

    def next_rate(self) -> float | None:
        return self._rate

    def record(self, step: StepResult) -> None:
        self.steps.append(step)
        rate = step.target_qps
        full = len(self.steps) >= self.max_steps
        if step.verdict in SAYS_NOTHING and not self._retrying and not full:
            self._retrying = True  # the same rate once more
            return
        self._retrying = False
        if step.verdict in INCONCLUSIVE or (step.verdict == GENERATOR_BOUND and self.held is None):
            self._rate = None
            return
        if step.holds:
            self.held = rate
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)
        top = self.failed is None and rate >= self.max_rate
        if full or top or (self.held is None and self._shrinks >= self.max_shrinks):
            self._rate = None
            return
        self._shrinks += self.failed is not None and self.held is None
        following = next_rate(rate, self.held, self.failed, self.precision, self.factor)
        self._rate = None if following is None else min(following, self.max_rate)


def run_sequence(
    measure: Callable[[float], StepResult], sequence: RateSequence
) -> list[StepResult]:
    """Every step of `sequence`, measured in turn; returns them in order."""
    while (rate := sequence.next_rate()) is not None:
        sequence.record(measure(rate))
    return sequence.steps


def fixed_rates(measure: Callable[[float], StepResult], rates: Sequence[float]) -> list[StepResult]:
    """Each rate in turn, stopping after the first that does not hold."""
    return run_sequence(measure, FixedRates(rates))


def search(
    measure: Callable[[float], StepResult],
    start: float,
    max_rate: float,
    precision: float = 0.1,
    max_steps: int = MAX_STEPS,
) -> list[StepResult]:
    """Doubling, then bisection (see `KneeSearch`); returns every step measured, in order."""
    return run_sequence(measure, KneeSearch(start, max_rate, precision, max_steps))


def next_rate(
    rate: float, held: float | None, failed: float | None, precision: float, factor: float = 2.0
) -> float | None:
    """The next rate to try: grow by `factor` until one fails, shrink by it while none
    has held, then bisect between the highest that held and the lowest that failed; None
    once they are within `precision` of each other."""
    if failed is None:
        return factor * rate
    if not held:
        return rate / factor
    if (failed - held) / held <= precision + 1e-9:  # a step of exactly `precision` is close
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

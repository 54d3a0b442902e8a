"""A knee's interval from repeated rounds, and variants compared by their knees, round by round.

Each round is a fresh knee search (loadtests/sweep/rounds.py), interleaved step by step
across the variants, so a round gives every variant one knee measured in the same
minutes. The knee reported is the median round's; its interval is the range of the
rounds' knees: with R independent rounds, the chance that the true median knee lies
outside the range of R measurements is 2 x 0.5^R, so the range of 3 rounds is a 75%
interval, of 5 rounds 94% (distribution-free: no assumption about how knees scatter).
One round has no spread to show: its interval is the search's own bracket, from the
rate that held to the lowest that did not.

Two variants are compared round by round: round i gives the log ratio of their knees
(each knee taken at the middle of its bracket, between the rate that held and the next
that did not), and the rounds' mean gets a 95% Student t interval: the machine's drift
within a round hit both alike and cancels in the ratio. The interval is never narrower
than the search's resolution (how coarsely a bisection pins a knee down). A verdict
needs the whole interval on one side of zero: anything else is "the same load within
this run's resolution".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

from loadtests.sweep.knee import LOWER_BOUND_LIMITS, Knee

CONFIDENCE = 0.95
CORE_NOISE = 0.10
"""The fixed loop's own scatter on a steady core: a core-speed move smaller than this is
not evidence that the machine moved (docs/PERFORMANCE.md, "The host's own speed")."""


class Verdict(StrEnum):
    """The candidate's knee against the baseline's."""

    HIGHER = "higher"
    LOWER = "lower"
    NOT_DIFFERENT = "not_different"


@dataclass(frozen=True)
class KneeInterval:
    """One variant's knee over the rounds: the median round's knee and the interval."""

    qps: float | None
    low_qps: float | None
    high_qps: float | None
    method: str
    """`rounds` (range of the rounds' knees) or `bracket` (one round: held to failed)."""
    rounds: int
    round_knees_qps: list[float | None]
    median_round: int
    """Index of the round whose knee is reported (its steps give the figures at the knee)."""

    @property
    def relative_width(self) -> float | None:
        """(high - low) / knee; None without a knee or without an upper end."""
        if not self.qps or self.low_qps is None or self.high_qps is None:
            return None
        return (self.high_qps - self.low_qps) / self.qps


def knee_interval(rounds: list[Knee]) -> KneeInterval:
    """The lower median of the rounds' knees (a real measured knee, and the cautious one
    of the two middle ones), and the range of them; one round gives its bracket."""
    if not rounds:
        raise ValueError("no rounds")
    knees = [k.qps for k in rounds]
    order = sorted(range(len(rounds)), key=lambda i: knees[i] or 0.0)
    middle = order[(len(rounds) - 1) // 2]
    qps = knees[middle]
    if len(rounds) == 1:
        only = rounds[0]
        high = None if only.is_lower_bound else only.ceiling_qps
        return KneeInterval(qps, qps, high, "bracket", 1, knees, 0)
    known = [k for k in knees if k is not None]
    low = min(knees, key=lambda k: k or 0.0)
    high = max(known, default=None)
    if any(k.is_lower_bound for k in rounds):
        high = None  # some round's knee is only a lower bound: no upper end is known
    return KneeInterval(qps, low, high, "rounds", len(rounds), knees, middle)


@dataclass(frozen=True)
class KneeComparison:
    """The candidate's knee relative to the baseline's: `difference` is candidate /
    baseline - 1 (0.12: holds 12% more), with its confidence interval; an end is None
    when unbounded (some round's knee was only a lower bound, or none held)."""

    baseline: str
    candidate: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Verdict
    rounds: int

    @property
    def resolution(self) -> float | None:
        """The widest the interval reaches from zero (the `±12%` of "the same load within
        this run's resolution"); None when an end is unbounded."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return max(abs(self.ci_low), abs(self.ci_high))


def _bracket(knee: Knee) -> tuple[float, float]:
    """Where the knee lies, in log requests/s: from the rate that held (-inf when none
    did) to the lowest that did not (+inf when none failed or the knee is only a lower
    bound, since the server may hold more)."""
    low = math.log(knee.qps) if knee.qps else -math.inf
    open_top = knee.ceiling_qps is None or knee.limited_by in LOWER_BOUND_LIMITS
    high = math.inf if open_top else math.log(knee.ceiling_qps or math.inf)
    return low, max(low, high)


@dataclass(frozen=True)
class _RoundRatio:
    """One round's log ratio of the candidate's knee to the baseline's: where it lies
    (from the brackets of both knees) and the point taken for it."""

    low: float
    high: float
    point: float | None
    """The middle of the bracket when both ends are known, else the ratio of the knees
    (None when a side held nothing)."""

    @classmethod
    def of(cls, base: Knee, cand: Knee) -> _RoundRatio:
        b_low, b_high = _bracket(base)
        c_low, c_high = _bracket(cand)
        low, high = c_low - b_high, c_high - b_low
        if math.isfinite(low) and math.isfinite(high):
            return cls(low, high, (low + high) / 2)
        point = math.log(cand.qps / base.qps) if base.qps and cand.qps else None
        return cls(low, high, point)


def compare_knees(
    baseline: str, base_rounds: list[Knee], candidate: str, cand_rounds: list[Knee]
) -> KneeComparison:
    """Paired by round (see the module's docstring). The interval's half-width is the
    larger of the rounds' t interval and the search's resolution (half the bracket of a
    round's ratio, on average): never narrower than what a bisection can tell apart. A
    verdict needs at least two rounds, since one round has no spread to judge it by."""
    if len(base_rounds) != len(cand_rounds) or not base_rounds:
        raise ValueError("a comparison needs the same rounds, at least one, on both sides")
    ratios = [_RoundRatio.of(b, c) for b, c in zip(base_rounds, cand_rounds, strict=True)]
    rounds = len(ratios)
    points = [r.point for r in ratios if r.point is not None]
    if not points:
        return KneeComparison(baseline, candidate, None, None, None, Verdict.NOT_DIFFERENT, rounds)
    centre = float(np.mean(points))
    finite = [(r.high - r.low) / 2 for r in ratios if math.isfinite(r.high - r.low)]
    spread = max(_sampling_half_width(points), float(np.mean(finite)) if finite else 0.0)
    low = -math.inf if any(math.isinf(r.low) for r in ratios) else centre - spread
    high = math.inf if any(math.isinf(r.high) for r in ratios) else centre + spread
    verdict = Verdict.NOT_DIFFERENT
    if rounds >= 2 and low > 0:
        verdict = Verdict.HIGHER
    elif rounds >= 2 and high < 0:
        verdict = Verdict.LOWER
    return KneeComparison(
        baseline,
        candidate,
        math.expm1(centre),
        None if math.isinf(low) else math.expm1(low),
        None if math.isinf(high) else math.expm1(high),
        verdict,
        rounds,
    )


def _sampling_half_width(points: list[float]) -> float:
    """Student t half-width of the mean of the rounds' log ratios (0 for one round, whose
    spread is unknown: the verdict then waits for more rounds)."""
    if len(points) < 2:
        return 0.0
    sd = float(np.std(points, ddof=1))
    quantile = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(points) - 1))
    return quantile * sd / math.sqrt(len(points))


def every_pair(rounds: dict[str, list[Knee]]) -> list[KneeComparison]:
    """Each later target against each earlier one, in the order they were swept."""
    names = list(rounds)
    return [
        compare_knees(base, rounds[base], cand, rounds[cand])
        for i, base in enumerate(names)
        for cand in names[i + 1 :]
    ]


def inconclusive_reason(
    between_rounds_share: float | None, intervals: dict[str, KneeInterval]
) -> str | None:
    """Why the run cannot support its knees, or None when it can: the server's core
    speed, read before each step, ran slower in one round of the search than in another
    (each round's median reading) by more than some knee's interval is wide, and by more
    than the reading's own noise, so that knee says more about when it was measured than
    about the server."""
    if between_rounds_share is None:
        return None
    moved = 1 - between_rounds_share
    if moved <= CORE_NOISE:
        return None
    narrow = {
        name: width
        for name, interval in intervals.items()
        if (width := interval.relative_width) is not None and width < moved
    }
    if not narrow:
        return None
    named = ", ".join(f"{name} {width:.0%}" for name, width in narrow.items())
    return (
        f"the server's core ran at {between_rounds_share:.2f} of its fastest round's speed in "
        f"its slowest round (medians of the readings before each step), a move of "
        f"{moved:.0%}, more than the width of the knees' intervals ({named})"
    )

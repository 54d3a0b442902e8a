"""Rounds of the knee search, interleaved across the targets step by step.

A host whose speed drifts by a third within a minute moves any knee measured on it, and
a knee measured once cannot show how much. So the search runs in rounds of fresh steps,
and within a round the targets take turns, one step each (A, B, C, A, B, C ...): the
first round's doubling offers every target the same rates in the same minutes, and
drift hits each alike. The first round searches from the start rate; each later round
starts at the knee the previous one found and walks from it in steps of the precision
until it is bracketed (two steps when it has not moved), bisecting if it moved further.
loadtests/sweep/intervals.py turns the rounds' knees into each knee's interval and each
pair's comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loadtests.sweep.knee import FixedRates, KneeSearch, RateSequence, knee_of
from loadtests.sweep.results import StepResult

Measure = Callable[[str, float, int], StepResult]
"""Measures one step of a target at a rate, in a round (numbered from 1)."""


@dataclass(frozen=True)
class RoundsPlan:
    rounds: int
    start_rate: float
    max_rate: float
    precision: float
    rates: list[float] | None = None
    """Fixed rates instead of a search (every round offers each of them in turn)."""

    @property
    def later_factor(self) -> float:
        """A later round's growth factor: one precision, so when the knee has not moved,
        the last knee and one step above it bracket it to the precision in two steps."""
        return 1 + self.precision


def sequence_for(plan: RoundsPlan, previous_knee: float | None) -> RateSequence:
    """The rates of one target's next round."""
    if plan.rates is not None:
        return FixedRates(plan.rates)
    if previous_knee is None:
        return KneeSearch(plan.start_rate, plan.max_rate, plan.precision)
    return KneeSearch(previous_knee, plan.max_rate, plan.precision, factor=plan.later_factor)


def run_rounds(
    targets: list[str], plan: RoundsPlan, measure: Measure, progress: Callable[[str], None]
) -> dict[str, list[list[StepResult]]]:
    """Every target's steps, round by round; each step is measured knowing its round."""
    found: dict[str, list[list[StepResult]]] = {t: [] for t in targets}
    previous: dict[str, float | None] = dict.fromkeys(targets)
    for number in range(1, plan.rounds + 1):
        if plan.rounds > 1:
            progress(f"round {number} of {plan.rounds}: {', '.join(targets)} in turn")
        sequences = {t: sequence_for(plan, previous[t]) for t in targets}
        while pending := [(t, r) for t in targets if (r := sequences[t].next_rate()) is not None]:
            for target, rate in pending:
                sequences[target].record(measure(target, rate, number))
        for target in targets:
            steps = sequences[target].steps
            found[target].append(steps)
            # The next round starts at the rate offered at this knee (not the rate
            # achieved there), so the targets' rates stay on the same ladder.
            knee = knee_of(steps)
            previous[target] = knee.step.target_qps if knee.step else previous[target]
    return found

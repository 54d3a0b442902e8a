"""Robustness as a requirement: `perfserve decide` floors (a minimum accuracy, or a maximum
RMSE, under a named condition such as "noise:0.5"), and the perturbations the `perfserve
compare` rule `max_robustness_drop` re-measures (the rule itself is the gate's,
perfserve/benchmarks/gate/compare.py)."""

from __future__ import annotations

from typing import Any

from perfserve.benchmarks.robustness.run import RobustnessSummary
from perfserve_common.usage import UsageError

GATED_PERTURBATIONS = ["noise", "shift"]
"""What compare re-measures for its rule: the all-feature conditions that move every row."""


def parse_floors(data: Any) -> dict[str, float]:
    if not isinstance(data, dict):
        raise UsageError('robustness must map a condition to a floor, e.g. {"noise:0.5": 0.9}')
    try:
        return {str(key): float(value) for key, value in data.items()}
    except (TypeError, ValueError):
        raise UsageError(f"every robustness floor needs a number: {data}") from None


def floor_reasons(
    variant: str, floors: dict[str, float], summary: RobustnessSummary | None
) -> list[str]:
    """One sentence per floor the variant breaks (the point estimate decides; the interval
    is shown so a reader sees how close a call it was)."""
    if not floors:
        return []
    if summary is None:
        raise UsageError("the requirements set robustness floors: give --robustness DIR")
    reasons = []
    higher = summary.metric != "rmse"
    for key, bound in floors.items():
        outcome = summary.quality_under(variant, key)
        if outcome is None:
            raise UsageError(_missing(summary, variant, key))
        q = outcome.quality
        if (q.value < bound) if higher else (q.value > bound):
            relation = "below the minimum" if higher else "above the maximum"
            reasons.append(
                f"robustness {key}: {summary.metric} {q.value:.4g} (95% CI {q.low:.4g} to "
                f"{q.high:.4g}) is {relation} of {bound:g}"
            )
    return reasons


def _missing(summary: RobustnessSummary, variant: str, key: str) -> str:
    if not any(o.variant == variant for o in summary.outcomes):
        return f"the robustness results hold no {variant}; run `perfserve robustness` on it"
    known = sorted(
        {
            "clean" if o.perturbation == "clean" else f"{o.perturbation}:{o.label}"
            for o in summary.outcomes
            if o.feature is None
        }
    )
    return f"robustness condition {key!r} was not measured; measured: {', '.join(known)}"

"""Robustness as a requirement: `perfserve decide` floors (a minimum accuracy, or a maximum
RMSE, under a named condition such as "noise:0.5") and the `perfserve compare` rule
`max_robustness_drop` (the candidate's quality under each perturbation may fall at most
this far below the baseline's, on the same perturbed rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perfserve.benchmarks.robustness.run import RobustnessSummary
from perfserve_common.usage import UsageError

if TYPE_CHECKING:
    from perfserve.benchmarks.gate.compare import GateRow

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


def drop_reasons(
    summary: RobustnessSummary,
    baseline: str,
    candidate: str,
    max_drop: float,
    table: list[GateRow],
) -> list[str]:
    """Per condition, the candidate against the baseline: absolute for accuracy, relative
    for RMSE (as the clean-quality rules are)."""
    reasons = []
    for was in summary.outcomes:
        if was.variant != baseline or was.feature is not None or was.perturbation == "clean":
            continue
        key = f"{was.perturbation}:{was.label}"
        now = summary.quality_under(candidate, key)
        if now is None:
            continue
        before, after = was.quality.value, now.quality.value
        drop = after / before - 1 if summary.metric == "rmse" else before - after
        table.append(
            {
                "dimension": f"{summary.metric} {key}",
                "baseline": before,
                "candidate": after,
                "delta": after - before,
                "significance": "robustness",
            }
        )
        if drop > max_drop:
            reasons.append(
                f"under {key} {summary.metric} is {after:.4f} against the baseline's "
                f"{before:.4f}: worse by {drop:.4f}, more than max_robustness_drop {max_drop:g}"
            )
    return reasons

"""`perfserve decide`: hard limits filter the variants, an objective ranks the survivors,
and every rejection says which limit it broke and by how much.

requirements.yaml:

    batch_size: 1                     # the batch size the limits refer to (default: bench's)
    limits:
      max_p95_latency_ms: 1.0
      min_accuracy: 0.95              # classifiers; regressors: max_rmse
      max_memory_mb: 64               # load + peak per call
      min_throughput_sps: 2000
      max_energy_mj_per_sample: 1.0
    objective: latency                # latency | accuracy | throughput | memory | energy | score
    weights: {accuracy: 0.4, latency: 0.3, memory: 0.15, energy: 0.15}   # for score
    robustness:                       # floors under perturbation (`perfserve robustness`)
      "noise:0.5": 0.90               # accuracy under 0.5-std noise; regressors: max rmse
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from perfserve.benchmarks.figures import VariantFigures
from perfserve.benchmarks.gate.score import (
    DEFAULT_WEIGHTS,
    DIMENSIONS,
    composite_scores,
    scoring_weights,
)
from perfserve.benchmarks.robustness.floors import floor_reasons, parse_floors
from perfserve_common.usage import UsageError

if TYPE_CHECKING:
    from perfserve.benchmarks.robustness.run import RobustnessSummary

MIB = 2**20

# limit -> (figure, what it is, its unit, True if the figure must be at most the limit)
LIMITS: dict[str, tuple[Callable[[VariantFigures], float], str, str, bool]] = {
    "max_p95_latency_ms": (lambda f: f.p95_ms, "p95 latency per call", "ms", True),
    "min_accuracy": (lambda f: f.quality, "accuracy", "", False),
    "max_rmse": (lambda f: f.quality, "rmse", "", True),
    "max_memory_mb": (lambda f: f.memory_bytes / MIB, "memory", "MiB", True),
    "min_throughput_sps": (lambda f: f.throughput_sps, "throughput", "samples/s", False),
    "max_energy_mj_per_sample": (lambda f: f.energy_mj_per_sample, "energy", "mJ/sample", True),
}

# objective -> (figure as shown, its unit, True if higher is better)
OBJECTIVES: dict[str, tuple[Callable[[VariantFigures], float], str, bool]] = {
    "latency": (lambda f: f.mean_ms, "ms mean per call", False),
    "accuracy": (lambda f: f.quality if f.quality_higher_is_better else -f.quality, "", True),
    "throughput": (lambda f: f.throughput_sps, "samples/s", True),
    "memory": (lambda f: f.memory_bytes / MIB, "MiB", False),
    "energy": (lambda f: f.energy_mj_per_sample, "mJ/sample", False),
}
SCORE_UNIT = "composite score, 0 to 1"


@dataclass(frozen=True)
class Requirements:
    limits: dict[str, float] = field(default_factory=dict)
    objective: str = "score"
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    batch_size: int | None = None
    robustness: dict[str, float] = field(default_factory=dict)
    """Condition ("noise:0.5") to the least accuracy (a regressor: the most RMSE) under it."""


@dataclass(frozen=True)
class Decision:
    ranked: list[tuple[str, float]]
    """Variants that meet every limit, best first, with their objective value."""
    rejected: dict[str, list[str]]
    """Variants that failed, each with one sentence per broken limit."""
    objective: str
    unit: str
    """What the ranked values are measured in."""
    notes: list[str] = field(default_factory=list)
    """What the ranking could not use, e.g. energy without a readable counter."""

    @property
    def choice(self) -> str | None:
        return self.ranked[0][0] if self.ranked else None


def load_requirements(path: Path) -> Requirements:
    """Read and check a requirements file; unknown keys are errors, not silent no-ops."""
    if not path.is_file():
        raise UsageError(f"no requirements file at {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must be a mapping with limits and objective")
    return parse_requirements(data)


def parse_requirements(data: dict[str, Any]) -> Requirements:
    unknown = set(data) - {"limits", "objective", "weights", "batch_size", "robustness"}
    if unknown:
        raise UsageError(f"unknown requirement key(s) {sorted(unknown)}")
    limits = data.get("limits") or {}
    bad = set(limits) - set(LIMITS)
    if bad:
        raise UsageError(f"unknown limit(s) {sorted(bad)}; known: {', '.join(LIMITS)}")
    objective = data.get("objective", "score")
    if objective not in (*OBJECTIVES, "score"):
        raise UsageError(
            f"objective {objective!r} is not one of {', '.join([*OBJECTIVES, 'score'])}"
        )
    weights = dict(DEFAULT_WEIGHTS) if "weights" not in data else dict.fromkeys(DIMENSIONS, 0.0)
    for name, value in (data.get("weights") or {}).items():
        if name not in DIMENSIONS:
            raise UsageError(f"unknown weight {name!r}; dimensions are {', '.join(DIMENSIONS)}")
        weights[name] = float(value)
    return Requirements(
        limits={name: float(value) for name, value in limits.items()},
        objective=objective,
        weights=weights,
        batch_size=data.get("batch_size"),
        robustness=parse_floors(data.get("robustness") or {}),
    )


def decide(
    figures: list[VariantFigures],
    requirements: Requirements,
    energy_estimate: str | None = None,
    robustness: RobustnessSummary | None = None,
) -> Decision:
    """`energy_estimate` says how energy was estimated when it was not measured; a variant
    rejected on energy then says that its verdict rests on that estimate. `robustness` is
    read for the requirements' robustness floors."""
    rejected: dict[str, list[str]] = {}
    for f in figures:
        reasons = [
            reason + (_estimated(energy_estimate) if limit == "max_energy_mj_per_sample" else "")
            for limit, bound in requirements.limits.items()
            if (reason := _broken(f, limit, bound)) is not None
        ]
        reasons += floor_reasons(f.variant, requirements.robustness, robustness)
        if reasons:
            rejected[f.variant] = reasons
    passing = [f for f in figures if f.variant not in rejected]
    notes: list[str] = []
    if requirements.objective == "score":
        weights, dropped = scoring_weights(requirements.weights, energy_estimate is None)
        notes += [dropped] if dropped else []
        # Scored among the survivors only: a rejected variant must not stretch the scale.
        scores = composite_scores(passing, weights) if passing else {}
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        unit = SCORE_UNIT
    else:
        value, unit, higher = OBJECTIVES[requirements.objective]
        ranked = sorted(
            ((f.variant, value(f)) for f in passing),
            key=lambda item: -item[1] if higher else item[1],
        )
    return Decision(ranked, rejected, requirements.objective, unit, notes)


def _estimated(how: str | None) -> str:
    return "" if how is None else f" (an estimate, not a measurement: {how})"


def _broken(f: VariantFigures, limit: str, bound: float) -> str | None:
    value, what, unit, at_most = LIMITS[limit]
    if limit in ("min_accuracy", "max_rmse") and f.quality_metric != what:
        raise UsageError(
            f"{limit} does not apply: the model's quality metric is {f.quality_metric}"
        )
    figure = value(f)
    if (figure > bound) if at_most else (figure < bound):
        relation = "above the maximum" if at_most else "below the minimum"
        return (
            f"{limit}: {what} {_with_unit(figure, unit)} is {relation} of {_with_unit(bound, unit)}"
        )
    return None


def _with_unit(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".rstrip()


def render_decision(decision: Decision, batch_size: int) -> str:
    unit = f" ({decision.unit})" if decision.unit else ""
    lines = [f"at batch size {batch_size} (rows per call), ranked by {decision.objective}{unit}:"]
    if decision.ranked:
        shown = "" if decision.unit == SCORE_UNIT else decision.unit
        lines += [
            f"  {i}. {name}: {_with_unit(value, shown)}"
            for i, (name, value) in enumerate(decision.ranked, 1)
        ]
        lines.append(f"choose: {decision.choice}")
    else:
        lines.append("  no variant meets every limit")
    for name, reasons in decision.rejected.items():
        lines.append(f"rejected {name}:")
        lines += [f"  - {reason}" for reason in reasons]
    lines += [f"note: {note}" for note in decision.notes]
    return "\n".join(lines)

"""The composite score: one number per variant from weights the user sets.

Each dimension is scaled to 0..1 across the variants compared (1 = best of them), so a
weight says how much that dimension matters, whatever its unit. A dimension on which all
variants tie gives everyone 1 and so cannot change the ranking.
"""

from __future__ import annotations

from collections.abc import Callable

from perfserve.benchmarks.figures import VariantFigures
from perfserve_common.usage import UsageError

DIMENSIONS = ("accuracy", "latency", "memory", "energy")
DEFAULT_WEIGHTS = {"accuracy": 0.4, "latency": 0.3, "memory": 0.15, "energy": 0.15}

# For each dimension: the figure, and whether higher is better.
_GOOD_WHEN_HIGH: dict[str, tuple[Callable[[VariantFigures], float], bool | None]] = {
    "accuracy": (lambda f: f.quality, None),  # direction from the metric (accuracy / rmse)
    "latency": (lambda f: f.mean_ms, False),
    "memory": (lambda f: float(f.memory_bytes), False),
    "energy": (lambda f: f.energy_mj_per_sample, False),
    "throughput": (lambda f: f.throughput_sps, True),
    "size": (lambda f: float(f.file_size_bytes), False),
}


def parse_weights(text: str) -> dict[str, float]:
    """`accuracy=0.5,latency=0.3` -> weights; dimensions left out weigh 0."""
    weights = dict.fromkeys(DIMENSIONS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in weights:
            raise UsageError(f"unknown weight {name!r}; dimensions are {', '.join(DIMENSIONS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UsageError(f"weight {part!r} is not NAME=NUMBER") from None
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise UsageError("weights must be non-negative and not all zero")
    return weights


def normalized(figures: list[VariantFigures], dimension: str) -> dict[str, float]:
    """Each variant's standing on one dimension, 1 for the best and 0 for the worst."""
    value, higher = _GOOD_WHEN_HIGH[dimension]
    values = {f.variant: value(f) for f in figures}
    if higher is None:
        higher = figures[0].quality_higher_is_better if figures else True
    low, high = min(values.values()), max(values.values())
    if high == low:
        return dict.fromkeys(values, 1.0)
    span = high - low
    return {name: (v - low) / span if higher else (high - v) / span for name, v in values.items()}


def scoring_weights(
    weights: dict[str, float], energy_measured: bool
) -> tuple[dict[str, float], str | None]:
    """The weights a score may use, and a note when energy had to be dropped.

    Without a readable energy counter the energy figure is CPU seconds times a constant,
    which ranks variants exactly as their CPU time does, and latency already counts that:
    weighting it as energy would count CPU time twice. So energy weighs 0 then, and the
    note says so.
    """
    if energy_measured or not weights.get("energy"):
        return dict(weights), None
    kept = weights | {"energy": 0.0}
    if not any(kept.values()):
        raise UsageError(
            "energy is the only weighted dimension, but no energy counter is readable "
            "(the figure is a CPU-time proxy): weight another dimension"
        )
    note = (
        f"energy weight {weights['energy']:g} dropped from the score: no energy counter was "
        "readable, and the CPU-time proxy would count CPU time twice (latency counts it)"
    )
    return kept, note


def composite_scores(figures: list[VariantFigures], weights: dict[str, float]) -> dict[str, float]:
    """Weighted mean of the normalized dimensions, in 0..1 (see `scoring_weights`)."""
    total = sum(weights.values())
    columns = {d: normalized(figures, d) for d, w in weights.items() if w}
    return {
        f.variant: sum(weights[d] * columns[d][f.variant] for d in columns) / total for f in figures
    }


def best_by_dimension(
    figures: list[VariantFigures], scores: dict[str, float]
) -> dict[str, list[str]]:
    """The best variants on each dimension, and overall (the highest composite score).

    Each is a list: variants that tie (the same accuracy, say) are all named, rather than
    one of them winning by the order of the store.
    """
    best = {dimension: _top(normalized(figures, dimension)) for dimension in _GOOD_WHEN_HIGH}
    best["overall"] = _top(scores)
    return best


def _top(values: dict[str, float]) -> list[str]:
    highest = max(values.values())
    return [name for name, value in values.items() if value >= highest - 1e-12]

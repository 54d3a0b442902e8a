"""The perturbations a robustness run applies to the hold-out: `noise`, `missing`, `shift`
and `edge` (names fixed in DESIGN.md), each a list of conditions of rising size.

Sizes are in the units a reader can act on: noise and offsets in training standard
deviations, scales as factors, missing features filled with the training median (what a
client that lost a column would most plausibly send), and edge values as a share of the
range guard's margin (`--max-feature-range-factor` spans beyond the training range), the
last just outside it, where the service answers 422.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from perfserve_common.usage import UsageError
from service.guards import FeatureRangeGuard
from service.store import Dataset, FeatureStats, Manifest

PERTURBATIONS = ("noise", "missing", "shift", "edge")
NOISE_STDS = (0.1, 0.5, 1.0)
SHIFTS = (("x0.5", 0.5, 0.0), ("x2", 2.0, 0.0), ("+1sd", 1.0, 1.0), ("-1sd", 1.0, -1.0))
EDGE_SHARES = (0.001, 0.01, 0.5, 0.99, 1.01)
"""Where an edge value sits: this share of the guard's margin beyond the training range
(1.01 is just outside: refused)."""

Apply = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Condition:
    """One perturbed copy of the hold-out."""

    perturbation: str
    label: str
    """What sets its size, e.g. "0.5" (std of noise), "k=3", "x2", "+1sd", "0.99"."""
    size: float
    """The size on a numeric axis, for the degradation curve."""
    apply: Apply
    feature: str | None = None
    """The one feature perturbed, for per-feature conditions (sensitivity)."""

    @property
    def key(self) -> str:
        """How requirements and rules name it: "noise:0.5", "missing:k=3"."""
        base = f"{self.perturbation}:{self.label}"
        return base if self.feature is None else f"{base}:{self.feature}"


@dataclass(frozen=True)
class Statistics:
    """Training mean, std and median per feature, and where they came from."""

    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray
    source: str
    caveat: str | None = None


def training_statistics(manifest: Manifest, holdout: Dataset) -> Statistics:
    """The store's recorded statistics; a store built before they were recorded gets the
    hold-out's own, with a caveat: noise scaled by the data it perturbs is slightly off."""
    stats: FeatureStats | None = manifest.feature_stats
    if stats is not None:
        return Statistics(
            np.asarray(stats.mean), np.asarray(stats.std), np.asarray(stats.median), stats.source
        )
    values = holdout.features.astype(np.float64)
    return Statistics(
        values.mean(axis=0),
        values.std(axis=0),
        np.median(values, axis=0),
        "hold-out",
        "the store records no training statistics (built before they were); noise, shifts "
        "and fill values use the hold-out's own mean, std and median: rebuild the store "
        "for the training ones",
    )


def noise(stats: Statistics) -> list[Condition]:
    def gaussian(scale: float) -> Apply:
        def apply(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return rows + rng.normal(size=rows.shape) * (scale * stats.std)

        return apply

    return [Condition("noise", f"{s:g}", s, gaussian(s)) for s in NOISE_STDS]


def missing(stats: Statistics, names: list[str], k_values: list[int]) -> list[Condition]:
    """k features missing at random per row, then each feature missing alone."""

    def random_k(k: int) -> Apply:
        def apply(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = rows.copy()
            for row in out:
                chosen = rng.choice(len(names), size=k, replace=False)
                row[chosen] = stats.median[chosen]
            return out

        return apply

    def one(column: int) -> Apply:
        def apply(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = rows.copy()
            out[:, column] = stats.median[column]
            return out

        return apply

    sizes = sorted({min(k, len(names)) for k in k_values})
    conditions = [Condition("missing", f"k={k}", k, random_k(k)) for k in sizes]
    return conditions + [
        Condition("missing", "one", 1, one(j), feature=name) for j, name in enumerate(names)
    ]


def shift(stats: Statistics, names: list[str]) -> list[Condition]:
    """Every feature at once (the curve), then each feature alone by x2 (sensitivity)."""

    def moved(scale: float, offset: float, column: int | None = None) -> Apply:
        def apply(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if column is None:
                return rows * scale + offset * stats.std
            out = rows.copy()
            out[:, column] = rows[:, column] * scale + offset * stats.std[column]
            return out

        return apply

    together = [
        Condition("shift", label, scale if offset == 0 else offset, moved(scale, offset))
        for label, scale, offset in SHIFTS
    ]
    return together + [
        Condition("shift", "x2", 2.0, moved(2.0, 0.0, j), feature=name)
        for j, name in enumerate(names)
    ]


def edge(guard: FeatureRangeGuard, manifest: Manifest) -> list[Condition]:
    """One feature per row, chosen at random, set beyond its training maximum or minimum
    (at random) by a share of the guard's margin."""
    ranges = manifest.feature_ranges
    if ranges is None or guard.factor <= 0:
        raise UsageError(
            "the edge perturbation needs a range guard: --max-feature-range-factor > 0 and a "
            "store that records feature ranges (rebuild it with `perfserve build`)"
        )
    low, high = np.asarray(ranges.low), np.asarray(ranges.high)
    margin_low = low - guard.low.astype(np.float64)
    margin_high = guard.high.astype(np.float64) - high

    def beyond(share: float) -> Apply:
        def apply(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = rows.copy()
            columns = rng.integers(0, rows.shape[1], size=len(rows))
            up = rng.random(len(rows)) < 0.5
            index = np.arange(len(rows))
            out[index, columns] = np.where(
                up,
                high[columns] + share * margin_high[columns],
                low[columns] - share * margin_low[columns],
            )
            return out

        return apply

    return [Condition("edge", f"{s:g}", s, beyond(s)) for s in EDGE_SHARES]


def conditions(
    chosen: list[str],
    manifest: Manifest,
    stats: Statistics,
    guard: FeatureRangeGuard,
    k_values: list[int],
) -> list[Condition]:
    """Every condition of the chosen perturbations, refusing ones that cannot mean anything
    for this model."""
    unknown = sorted(set(chosen) - set(PERTURBATIONS))
    if unknown:
        raise UsageError(
            f"--perturbations: unknown {unknown}; choose from {', '.join(PERTURBATIONS)}"
        )
    if {"noise", "shift"} & set(chosen) and not np.any(stats.std > 0):
        raise UsageError(
            "noise and shift are scaled by each feature's training std, and every feature of "
            "this store is constant: nothing to perturb"
        )
    names = manifest.feature_names
    made = {
        "noise": lambda: noise(stats),
        "missing": lambda: missing(stats, names, k_values),
        "shift": lambda: shift(stats, names),
        "edge": lambda: edge(guard, manifest),
    }
    return [condition for name in PERTURBATIONS if name in chosen for condition in made[name]()]

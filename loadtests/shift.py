"""Shifted traffic: hold-out rows with some features scaled, as a client sending a
feature in the wrong unit would, so that the service's drift metrics, the dashboard's
Drift row and the `PerfserveInputDrift` alert can be seen to react (service/drift.py).

`--shift FEATURE=SCALE` (repeatable, or comma-joined in `PERFSERVE_SHIFT`) multiplies
that feature of every row sent by SCALE; the sweep and the Locust scenarios take it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from perfserve_common.usage import UsageError

Shift = Sequence[tuple[str, float]]
"""(feature, scale) pairs, in the order given."""


def shift_specs(text: str) -> list[tuple[str, float]]:
    """`mean_radius=2` or `a=2,b=0.5` as (feature, scale) pairs; argparse's type for
    `--shift` (with `action="extend"`, so repeats and `PERFSERVE_SHIFT` add up), so a
    scale that is not a number is a usage error naming the option."""
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        feature, equals, scale = part.partition("=")
        try:
            value = float(scale)
        except ValueError:
            value = math.nan
        if not equals or not feature.strip() or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{part!r}: give FEATURE=SCALE with SCALE a finite number, e.g. 'mean radius=2'"
            )
        pairs.append((feature.strip(), value))
    if not pairs:
        raise argparse.ArgumentTypeError(f"{text!r}: give FEATURE=SCALE, e.g. 'mean radius=2'")
    return pairs


def check_features(shift: Shift, feature_names: list[str]) -> None:
    """A usage error, listing the model's features, when `shift` names one it lacks."""
    unknown = [feature for feature, _ in shift if feature not in feature_names]
    if unknown:
        raise UsageError(
            f"--shift {','.join(unknown)}: not a feature of the model; "
            f"features are {', '.join(feature_names)}"
        )


def shifted(rows: np.ndarray, shift: Shift, feature_names: list[str]) -> np.ndarray:
    """`rows` with each feature `shift` names scaled by its factor."""
    check_features(shift, feature_names)
    if not shift:
        return rows
    moved = rows.astype(np.float64, copy=True)
    for feature, scale in shift:
        moved[:, feature_names.index(feature)] *= scale
    return moved

"""Per-row checks around the model: inputs far outside what the model learned from, and
answers that are not numbers.

A float32 feature of 3e38 or 1e37 is valid JSON and finite, yet it overflows inside the
scaler and the answer comes out NaN (argmax of NaN is label 0): without these checks the
client gets a 200 with `"probabilities": [[null, null]]`. Rows are computed independently,
so only the request holding such a row fails; its batch-mates are answered.
"""

from __future__ import annotations

import math

import numpy as np

from service.payload import Reject
from service.store import Manifest


class FeatureRangeGuard:
    """Refuses a value further than `factor` times the feature's training span beyond its
    training minimum or maximum (a constant feature counts its own magnitude, or 1, as
    span). `factor` 0 turns the check off."""

    def __init__(self, manifest: Manifest, factor: float) -> None:
        self.names = manifest.feature_names
        ranges = manifest.feature_ranges
        self.factor = factor
        self.enabled = factor > 0 and ranges is not None
        if ranges is None or not self.enabled:
            self.low = self.high = np.zeros(manifest.n_features, dtype=np.float32)
            return
        low, high = np.asarray(ranges.low), np.asarray(ranges.high)
        span = high - low
        span = np.where(span > 0, span, np.maximum(np.maximum(abs(low), abs(high)), 1.0))
        self.low = (low - factor * span).astype(np.float32)
        self.high = (high + factor * span).astype(np.float32)

    def check(self, rows: np.ndarray) -> None:
        """Raise a 422 naming the first row and feature out of range."""
        if not self.enabled:
            return
        # ufuncs and one reduction, no ndarray.all(): a fifth cheaper on one-row requests.
        inside = np.greater_equal(rows, self.low)
        inside &= rows <= self.high
        if np.logical_and.reduce(inside, axis=None):
            return
        row, column = (int(i[0]) for i in np.nonzero((rows < self.low) | (rows > self.high)))
        raise Reject(
            422,
            "invalid_input",
            f"row {row} feature {column} ({self.names[column]}) = {float(rows[row, column]):g} "
            f"is far outside the training range; accepted {float(self.low[column]):g} to "
            f"{float(self.high[column]):g} (max_feature_range_factor {self.factor:g})",
        )


def check_answers(labels: np.ndarray, probabilities: np.ndarray | None) -> None:
    """Raise a 422 naming the first row whose answer is not a finite number."""
    values = labels if probabilities is None else probabilities
    # One reduction is the cheapest test on the hot path: NaN and inf propagate into the
    # sum (a sum that overflows merely sends us to the exact check).
    if values.dtype.kind != "f" or math.isfinite(np.add.reduce(values, axis=None)):
        return
    if np.isfinite(values).all():
        return
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    row = int(np.flatnonzero(~finite)[0])
    raise Reject(
        422,
        "invalid_input",
        f"row {row}: the model's answer is not a number (its features overflow the model's "
        "arithmetic); send values in the range the model was trained on",
    )

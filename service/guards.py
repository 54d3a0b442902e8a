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

FLOAT32_MAX = np.finfo(np.float32).max


class FeatureRangeGuard:
    """Screens a batch for rows the model must not see: a value that is not a finite
    float32, or further than `factor` times the feature's training span beyond its
    training minimum or maximum (a constant feature counts its own magnitude, or 1, as
    span). `factor` 0 turns the range check off; finiteness is always checked.

    The batcher screens each batch once (`bad_rows`, a few vectorized comparisons
    whatever the batch size); only a request that holds a bad row is looked at again,
    alone, to say which value is wrong (`refusal`)."""

    def __init__(self, manifest: Manifest, factor: float) -> None:
        self.names = manifest.feature_names
        ranges = manifest.feature_ranges
        self.factor = factor
        if ranges is None or factor <= 0:
            # Bounds that only infinities and NaN fall outside of.
            self.low = np.full(manifest.n_features, -FLOAT32_MAX, dtype=np.float32)
            self.high = np.full(manifest.n_features, FLOAT32_MAX, dtype=np.float32)
            return
        low, high = np.asarray(ranges.low), np.asarray(ranges.high)
        span = high - low
        span = np.where(span > 0, span, np.maximum(np.maximum(abs(low), abs(high)), 1.0))
        self.low = (low - factor * span).astype(np.float32)
        self.high = (high + factor * span).astype(np.float32)

    def bad_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """For a float32 batch: None when every row may be computed, else a boolean mask
        of the rows that may not. NaN fails every comparison and the bounds are finite,
        so this one test also refuses what is not a finite float32."""
        inside = self._inside(rows)
        if np.logical_and.reduce(inside, axis=None):
            return None
        bad: np.ndarray = ~np.logical_and.reduce(inside, axis=1)
        return bad

    def _inside(self, rows: np.ndarray) -> np.ndarray:
        """Per value of float32 rows: within the bounds (NaN never is)."""
        inside: np.ndarray = np.greater_equal(rows, self.low)
        inside &= rows <= self.high
        return inside

    def refusal(self, rows: np.ndarray) -> Reject:
        """The 422 for one request whose rows failed the screen, naming its first bad value."""
        with np.errstate(over="ignore"):
            values = rows.astype(np.float32)
        row, column = (int(i[0]) for i in np.nonzero(~self._inside(values)))
        if not np.isfinite(values[row, column]):
            return Reject(
                422,
                "invalid_input",
                f"row {row} holds a value out of float32 range (beyond ±3.4e38)",
            )
        return Reject(
            422,
            "invalid_input",
            f"row {row} feature {column} ({self.names[column]}) = {float(rows[row, column]):g} "
            f"is far outside the training range; accepted {float(self.low[column]):g} to "
            f"{float(self.high[column]):g} (max_feature_range_factor {self.factor:g})",
        )


def finite_answers(labels: np.ndarray, probabilities: np.ndarray | None) -> bool:
    """Whether every answer is a finite number, in one reduction: NaN and inf propagate
    into the sum (a sum that overflows merely sends the caller to the exact check). The
    batcher runs it once per batch; only a batch that fails it is checked request by
    request (`check_answers`)."""
    values = labels if probabilities is None else probabilities
    return values.dtype.kind != "f" or math.isfinite(np.add.reduce(values, axis=None))


def check_answers(labels: np.ndarray, probabilities: np.ndarray | None) -> None:
    """Raise a 422 naming the first row whose answer is not a finite number."""
    values = labels if probabilities is None else probabilities
    if finite_answers(labels, probabilities) or np.isfinite(values).all():
        return
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    row = int(np.flatnonzero(~finite)[0])
    raise Reject(
        422,
        "invalid_input",
        f"row {row}: the model's answer is not a number (its features overflow the model's "
        "arithmetic); send values in the range the model was trained on",
    )

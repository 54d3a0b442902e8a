"""Input drift while serving: how far what a variant is sent has moved from the rows its
model learned from (the training distribution `perfserve build` recorded in the store).

Two signals, per variant and feature:

- out of range: values below the training minimum or above the training maximum
  (`feature_ranges`), counted in `perfserve_feature_out_of_range_total{variant,feature}`.
  A value far outside (`max_feature_range_factor`) is refused with 422 before it is
  computed and is not counted here; this counts what the variant did answer (from the
  model or from the row cache, whose hits are observed as inputs too).
- the population stability index over a sliding window of the last `drift_window_rows`
  rows a variant answered, against the training histogram (`feature_histograms`: per
  feature, cut points at the training deciles, or fewer quantiles for a small training
  set, and the share of training rows in each bin), in `perfserve_input_psi{variant,feature}`:

      PSI = sum over bins b of (a_b - e_b) * ln(a_b / e_b)

  where e_b is the training share of bin b and a_b the window's, both floored at
  `EPSILON` (1e-4), so that an empty bin adds a large but finite term instead of an
  infinity. Both shares sum to one; PSI is 0 for identical histograms and grows with every
  bin that gained or lost rows. `feature="all"` is the mean over the features: one shifted
  feature among thirty moves it little, a shift of everything moves it as much as each.
  The usual reading, per feature: below 0.1 stable, 0.1 to 0.2 worth watching, above 0.2
  act (the alert `PerfserveInputDrift`). A window of n rows reads about
  (bins - 1) / n higher than the truth from sampling alone (0.001 at 10,000 rows), and
  the training histogram itself is only as exact as the training set is large.

The cost on the hot path is one append per batch: the float32 matrix the batcher built
for the model call anyway goes into a bounded buffer (`observe`). A supervised loop
(`drift`, every `drift_interval_s`) takes it, then counts, bins and sets the gauges on a
worker thread. Past `MAX_PENDING_BYTES` waiting (the loop fell behind), batches are left
out of both signals rather than held.

A store built before histograms were recorded has none: drift is then off for it, which
the log and `/models` (`drift`) say.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Gauge

from service.store import FeatureHistograms, FeatureRanges, Manifest

log = logging.getLogger("perfserve")

EPSILON = 1e-4
"""Floor of a bin's share in the PSI formula: an empty bin counts as this share."""
BINS = 10
"""Training histogram bins per feature at most (deciles; fewer when values repeat)."""
MIN_ROWS_PER_BIN = 50
"""Training rows each bin should hold: a share estimated from fewer is itself so noisy
that traffic from the very same distribution reads as drift (the small example's 398
training rows get 7 bins; with 10, its own hold-out read as 0.17 to 0.22 at worst)."""
JOIN_BATCHES = 512
"""Batches the drift loop joins in one numpy call (see `VariantDrift.update`)."""
MAX_PENDING_BYTES = 16 * 1024 * 1024
"""Rows waiting for the drift loop, per variant; beyond it batches are left out."""


def cut_points(column: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The inner edges of `bins` equal-count bins of `column` (duplicates merged, so a
    feature of few distinct values gets fewer bins and a constant one a single bin)."""
    quantiles = np.quantile(column.astype(np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    edges: np.ndarray = np.unique(quantiles)
    return edges


def bin_counts(edges: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Rows of `column` in each of the `len(edges) + 1` bins: (-inf, e0), [e0, e1), ...,
    [e_last, inf), the same at build time and while serving."""
    counts: np.ndarray = np.bincount(
        np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1
    )
    return counts


def histograms(rows: np.ndarray, source: str) -> FeatureHistograms:
    """Per feature of `rows`: cut points at equal-count quantiles (up to `BINS` bins, at
    least `MIN_ROWS_PER_BIN` rows each) and the share of rows in each bin."""
    bins = max(2, min(BINS, len(rows) // MIN_ROWS_PER_BIN))
    edges = [cut_points(rows[:, f], bins) for f in range(rows.shape[1])]
    shares = [bin_counts(e, rows[:, f]) / len(rows) for f, e in enumerate(edges)]
    return FeatureHistograms(
        edges=[e.tolist() for e in edges],
        proportions=[s.tolist() for s in shares],
        source=source,
    )


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of shares `actual` against `expected` (see the
    module docstring), each share floored at `EPSILON`."""
    e = np.maximum(expected, EPSILON)
    a = np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_off_reason(manifest: Manifest) -> str | None:
    """Why drift cannot be watched for this store, or None when it can."""
    if manifest.feature_histograms is None or manifest.feature_ranges is None:
        return (
            "the store records no training histograms (built before they were); "
            "rebuild it with `perfserve build` to watch drift"
        )
    return None


@dataclass(frozen=True)
class DriftMetrics:
    """The two metric families drift sets (defined in service/metrics/definitions.py)."""

    out_of_range: Counter
    psi: Gauge


@dataclass
class _Window:
    """Per-feature bin counts of the last rows, kept as one chunk per drain."""

    chunks: deque[tuple[int, list[np.ndarray]]] = field(default_factory=deque)
    rows: int = 0

    def add(self, rows: int, counts: list[np.ndarray], limit: int) -> None:
        self.chunks.append((rows, counts))
        self.rows += rows
        while self.rows - self.chunks[0][0] >= limit:
            self.rows -= self.chunks.popleft()[0]

    def shares(self) -> list[np.ndarray]:
        total = [np.zeros_like(c, dtype=np.float64) for c in self.chunks[0][1]]
        for _, counts in self.chunks:
            for summed, count in zip(total, counts, strict=True):
                summed += count
        return [summed / self.rows for summed in total]


class VariantDrift:
    """One variant's drift: the hot path's buffer (`observe`) and the loop's side (`update`)."""

    def __init__(
        self,
        name: str,
        ranges: FeatureRanges,
        training: FeatureHistograms,
        names: list[str],
        metrics: DriftMetrics,
        window_rows: int,
        min_rows: int,
    ) -> None:
        self.name = name
        self.names = names
        self.low = np.asarray(ranges.low, dtype=np.float32)
        self.high = np.asarray(ranges.high, dtype=np.float32)
        self.edges = [np.asarray(e) for e in training.edges]  # float64, as at build time
        self.expected = [np.asarray(p) for p in training.proportions]
        self.metrics = metrics
        self.window_rows = window_rows
        self.min_rows = min_rows
        self.max_pending_rows = max(1, MAX_PENDING_BYTES // (4 * len(names)))
        self._pending: deque[np.ndarray] = deque()
        self._pending_rows = 0
        self._window = _Window()

    def observe(self, rows: np.ndarray) -> None:
        """The hot path's part: keep a reference to a computed batch's float32 rows."""
        if self._pending_rows < self.max_pending_rows:
            self._pending.append(rows)
            self._pending_rows += len(rows)

    def take(self) -> list[np.ndarray]:
        """What arrived since the last run, handed from the hot path to the loop; on the
        event loop, as `observe`, so the two never race on the buffer."""
        taken = list(self._pending)
        self._pending.clear()
        self._pending_rows = 0
        return taken

    def update(self, taken: list[np.ndarray]) -> None:
        """The loop's part, on a worker thread: count and bin `taken`, set the gauges.

        Batches are joined `JOIN_BATCHES` at a time: joining holds the GIL throughout, and
        an unbatched server hands over tens of thousands of single rows per run, whose
        joining in one call would keep the event loop waiting for milliseconds."""
        if not taken:
            return
        outside = np.zeros(len(self.names), dtype=np.int64)
        tail: deque[np.ndarray] = deque()
        tail_rows = 0
        for start in range(0, len(taken), JOIN_BATCHES):
            rows = np.concatenate(taken[start : start + JOIN_BATCHES])
            outside += np.count_nonzero((rows < self.low) | (rows > self.high), axis=0)
            tail.append(rows)
            tail_rows += len(rows)
            while tail_rows - len(tail[0]) >= self.window_rows:
                tail_rows -= len(tail.popleft())
        self._count_out_of_range(outside)
        recent = np.concatenate(tail)[-self.window_rows :]
        counts = [bin_counts(edges, recent[:, f]) for f, edges in enumerate(self.edges)]
        self._window.add(len(recent), counts, self.window_rows)
        if self._window.rows >= self.min_rows:
            self._set_psi(self._window.shares())

    def _count_out_of_range(self, outside: np.ndarray) -> None:
        for feature in np.flatnonzero(outside):
            self.metrics.out_of_range.labels(self.name, self.names[feature]).inc(
                int(outside[feature])
            )

    def _set_psi(self, shares: list[np.ndarray]) -> None:
        values = [psi(e, a) for e, a in zip(self.expected, shares, strict=True)]
        for name, value in zip(self.names, values, strict=True):
            self.metrics.psi.labels(self.name, name).set(value)
        self.metrics.psi.labels(self.name, "all").set(sum(values) / len(values))


class DriftMonitor:
    """Every loaded variant's drift, for one process; off (`reason`) for a store without
    training histograms or with drift turned off."""

    def __init__(
        self,
        manifest: Manifest,
        metrics: DriftMetrics,
        *,
        enabled: bool,
        window_rows: int,
        min_rows: int,
    ) -> None:
        self.manifest = manifest
        self.metrics = metrics
        self.window_rows = window_rows
        self.min_rows = min_rows
        self.reason = drift_off_reason(manifest) if enabled else "turned off (drift=false)"
        self.variants: dict[str, VariantDrift] = {}
        if self.reason is not None:
            # A store that cannot be watched is news; a setting the operator chose is not.
            level = logging.WARNING if enabled else logging.INFO
            log.log(level, "input drift is not watched: %s", self.reason)

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def for_variant(self, name: str) -> VariantDrift | None:
        """The variant's drift, created on first call; None while drift is off."""
        manifest = self.manifest
        ranges, training = manifest.feature_ranges, manifest.feature_histograms
        if self.reason is not None or ranges is None or training is None:
            return None
        if name not in self.variants:
            self.variants[name] = VariantDrift(
                name,
                ranges,
                training,
                manifest.feature_names,
                self.metrics,
                self.window_rows,
                self.min_rows,
            )
        return self.variants[name]

    async def step(self) -> None:
        """One run of the drift loop: take every variant's rows on the event loop, count
        and bin them on a worker thread (numpy releases the GIL for most of it)."""
        taken = [(drift, drift.take()) for drift in self.variants.values()]
        if any(rows for _, rows in taken):
            await asyncio.to_thread(_update_all, taken)

    def describe(self) -> dict[str, object]:
        """What `/models` says about drift."""
        return {
            "watched": self.enabled,
            "reason": self.reason,
            "window_rows": self.window_rows,
        }


def _update_all(taken: list[tuple[VariantDrift, list[np.ndarray]]]) -> None:
    for drift, rows in taken:
        drift.update(rows)

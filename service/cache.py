"""A bounded LRU of answers for repeated rows, one per loaded variant (`--cache-rows N`).

Some traffic repeats itself: the same item scored again and again for popular users or
products. A cache hit answers from memory and skips the batcher, the model and its queue.

What keeps it correct:
- One cache per loaded variant, created with the variant's model and keyed inside it by
  the row's decoded float64 bytes: equal rows in different JSON spellings (`1`, `1.0`,
  `1e0`) hit, and no answer can leave the model version that computed it. A split change
  routes a request to another variant, which has its own cache.
- Only answers the model computed and that passed every check are stored; one request
  hits only when all of its rows do.
- Hits are not a variant's speed: they are kept out of a rollout's evidence and out of
  shadow mirroring (service/predict.py), so a cached variant cannot look faster to the
  judge than it is.

Memory is bounded by `max_rows` entries of one fixed size per variant (the key, the
answer arrays and the dictionary's own cost), shown as `perfserve_cache_bytes` and in
`/models`.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

import numpy as np

from service.batching import BatchResult
from service.metrics import CacheMetrics

# An OrderedDict entry beyond its key and value objects: the hash table's slot and index,
# and the linked-list node that keeps the order (CPython 3.11, 64-bit; checked against
# tracemalloc in tests/service/test_cache.py).
ENTRY_OVERHEAD_BYTES = 104
FLOAT64 = np.dtype(np.float64)


class RowCache:
    """The last `max_rows` distinct rows one variant answered, least recently used first.

    Used from the event loop thread only, like the rest of the hot path."""

    __slots__ = ("_entries", "_metrics", "entry_bytes", "max_rows", "model_version", "variant")

    def __init__(
        self, variant: str, model_version: str, max_rows: int, metrics: CacheMetrics
    ) -> None:
        self.variant = variant
        self.model_version = model_version
        self.max_rows = max_rows
        self.entry_bytes = 0
        """What one entry costs; measured on the first one stored (all have one shape)."""
        self._entries: OrderedDict[bytes, BatchResult] = OrderedDict()
        self._metrics = metrics
        metrics.folding.gauge(metrics.rows, self._entries.__len__)
        metrics.folding.gauge(metrics.bytes, lambda: self.bytes)

    @property
    def rows(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Memory the entries hold now (at most `max_rows` times `entry_bytes`)."""
        return len(self._entries) * self.entry_bytes

    def lookup(self, rows: np.ndarray) -> BatchResult | None:
        """The answer to `rows` when every row is cached (counted as a hit), else None
        (a miss)."""
        entries = self._entries
        if len(rows) == 1:
            key = (rows if rows.dtype is FLOAT64 else rows.astype(FLOAT64)).tobytes()
            found = entries.get(key)
            if found is None:
                self._metrics.misses.inc()
                return None
            entries.move_to_end(key)
            self._metrics.hits.inc()
            return found
        keys = _keys(rows)
        if not all(key in entries for key in keys):
            self._metrics.misses.inc()
            return None
        for key in keys:
            entries.move_to_end(key)
        self._metrics.hits.inc()
        return _joined([entries[key] for key in keys])

    def store(self, rows: np.ndarray, result: BatchResult) -> None:
        """Keep the model's answer to each row of a request, evicting the least recently
        used rows beyond `max_rows`. Each row's answer is copied out of its batch's arrays,
        so an entry holds its own few bytes, not the whole batch's answer."""
        entries = self._entries
        if len(rows) == 1:  # most requests
            key = (rows if rows.dtype is FLOAT64 else rows.astype(FLOAT64)).tobytes()
            # A batch of this one row answered in arrays of its own: kept as they are.
            alone = result.batch_rows == 1
            entries[key] = result if alone else _own(result.labels, result.probabilities)
            entries.move_to_end(key)
        else:
            labels, probabilities = result.labels, result.probabilities
            for index, key in enumerate(_keys(rows)):
                entries[key] = _own(
                    labels[index : index + 1],
                    None if probabilities is None else probabilities[index : index + 1],
                )
                entries.move_to_end(key)
        if len(entries) > self.max_rows:
            self._evict(len(entries) - self.max_rows)
        elif not self.entry_bytes:
            self.entry_bytes = _entry_bytes(*next(iter(entries.items())))

    def _evict(self, count: int) -> None:
        entries = self._entries
        if not self.entry_bytes:
            self.entry_bytes = _entry_bytes(*next(iter(entries.items())))
        for _ in range(count):
            entries.popitem(last=False)
        self._metrics.evictions.inc(count)

    def describe(self) -> dict[str, Any]:
        """What `/models` shows of this cache (this worker's)."""
        return {
            "model_version": self.model_version,
            "max_rows": self.max_rows,
            "rows": self.rows,
            "bytes": self.bytes,
            "max_bytes": self.max_rows * self.entry_bytes if self.entry_bytes else None,
        }


def _keys(rows: np.ndarray) -> list[bytes]:
    """Each row's float64 bytes: the same values give the same key whichever protocol or
    JSON spelling carried them (a V2 FP32 tensor arrives as float32)."""
    if rows.dtype is not FLOAT64:
        rows = rows.astype(FLOAT64)
    return [row.tobytes() for row in rows]


def _own(labels: np.ndarray, probabilities: np.ndarray | None) -> BatchResult:
    """One row's answer in arrays of its own (a batch's are views of the whole batch)."""
    return BatchResult(
        labels.copy(), None if probabilities is None else probabilities.copy(), 0.0, 0.0, 0
    )


def _joined(found: list[BatchResult]) -> BatchResult:
    """Several rows' cached answers as one request's answer."""
    probabilities = [entry.probabilities for entry in found if entry.probabilities is not None]
    return BatchResult(
        np.concatenate([entry.labels for entry in found]),
        np.concatenate(probabilities) if probabilities else None,
        0.0,
        0.0,
        0,
    )


def _entry_bytes(key: bytes, entry: BatchResult) -> int:
    """One entry's memory: key, answer object, its arrays (with their data) and the
    dictionary's share."""
    arrays = _array_bytes(entry.labels)
    if entry.probabilities is not None:
        arrays += _array_bytes(entry.probabilities)
    return sys.getsizeof(key) + sys.getsizeof(entry) + arrays + ENTRY_OVERHEAD_BYTES


def _array_bytes(array: np.ndarray) -> int:
    """An array's memory, with the array it views (a one-row batch's answer is kept as
    the batch gave it)."""
    return sys.getsizeof(array) + (0 if array.base is None else sys.getsizeof(array.base))

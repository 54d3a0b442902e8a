"""Client-side measurements: exact-enough latency histograms and counts, per time window.

Locust's own statistics round response times to two significant digits and measure
from the moment a request is sent, so a server that stalls the generator hides its
queueing from them. Here every answer is recorded twice into HdrHistograms (1 µs to
60 s, three significant digits, so a 50 ms p99 is exact to 50 µs): once from the time
the request was *scheduled* (what an open-loop user would see) and once from the time
it was actually sent. Counts are kept per time window of a step, so a sweep can judge
stability over the last windows, and everything merges: worker processes ship their
deltas to the controller in a compact wire form.

This module does not import Locust (which monkey-patches the process at import), so
tests and the report code can use it freely.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    """Latencies in microseconds, 1 µs to 60 s, three significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@cache
def _upper_values_us() -> np.ndarray:
    """The highest value each histogram counter stands for (same for every histogram)."""
    h = new_histogram()
    return np.array(
        [h.get_highest_equivalent_value(h.get_value_from_index(i)) for i in range(h.counts_len)],
        dtype=np.float64,
    )


def counts_of(histogram: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(histogram.counts).astype(np.float64)


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float:
    """The value at `percentile` (0..100), in ms; NaN for an empty histogram.

    The nearest-rank percentile: the smallest recorded value (to the histogram's
    precision) with at least `percentile`% of the counts at or below it. (The hdrh
    package rounds the rank to the nearest count instead, which can report the value
    just below the true p99.)"""
    total = histogram.get_total_count()
    if total == 0:
        return float("nan")
    target = max(1, math.ceil(round(percentile * total / 100, 9)))
    cumulative = np.cumsum(counts_of(histogram))
    index = int(np.searchsorted(cumulative, target))
    return float(min(_upper_values_us()[index], histogram.get_max_value())) / 1000


def count_above_ms(histogram: HdrHistogram, threshold_ms: float) -> int:
    """How many recorded values exceed `threshold_ms` (to the histogram's precision)."""
    above = _upper_values_us() > threshold_ms * 1000
    return int(counts_of(histogram)[above].sum())


def bucket_counts(histogram: HdrHistogram, bounds_s: tuple[float, ...]) -> list[int]:
    """Cumulative counts at or below each bound (seconds): a Prometheus histogram's buckets."""
    cumulative = np.concatenate([[0.0], np.cumsum(counts_of(histogram))])
    positions = np.searchsorted(_upper_values_us(), np.asarray(bounds_s) * 1e6, side="right")
    return [int(cumulative[p]) for p in positions]


def record_bulk(histogram: HdrHistogram, values_us: list[int]) -> None:
    """Record many values at once: what `record_value` does one by one (a few µs each in
    pure Python, three times per answer) as one vectorized pass. A histogram's counters
    run in value order, so a value's counter is the first whose highest equivalent
    value is at least the value. The counts are added as one `bincount`, about a third
    of `np.add.at`'s cost (0.13 ms per 3,200 values): this runs wherever a tally is
    first read, for every window a sweep judges."""
    if not values_us:
        return
    values = np.clip(np.asarray(values_us, dtype=np.int64), LOWEST_US, HIGHEST_US)
    indices = np.searchsorted(_upper_values_us(), values, side="left")
    counts = np.ctypeslib.as_array(histogram.counts)
    counts += np.bincount(indices, minlength=counts.size).astype(counts.dtype)
    histogram.total_count += len(values)
    histogram.min_value = min(histogram.min_value, int(values.min()))
    histogram.max_value = max(histogram.max_value, int(values.max()))


@dataclass
class Tally:
    """What one variant's answers looked like within one window.

    Latencies are kept in lists as they come and go into the histograms in one pass
    when first read (`record_bulk`): recording stays a few list appends per answer on
    the generator's hot path."""

    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    histograms: tuple[HdrHistogram, HdrHistogram, HdrHistogram] = field(
        default_factory=lambda: (new_histogram(), new_histogram(), new_histogram())
    )
    pending: tuple[list[int], list[int], list[int]] = field(default_factory=lambda: ([], [], []))

    @property
    def scheduled(self) -> HdrHistogram:
        """Latency of successful answers from the scheduled send time (µs)."""
        return self._settled(0)

    @property
    def sent(self) -> HdrHistogram:
        """Latency of successful answers from the actual send time (µs)."""
        return self._settled(1)

    @property
    def outside(self) -> HdrHistogram:
        """Latency from the scheduled time minus the server's own `Server-Timing` total
        (µs), for the answers that carried one: the wire, both HTTP stacks, the generator."""
        return self._settled(2)

    def record(self, scheduled_us: int, sent_us: int, outside_us: int | None) -> None:
        scheduled, sent, outside = self.pending
        scheduled.append(scheduled_us)
        sent.append(sent_us)
        if outside_us is not None:
            outside.append(outside_us)

    def _settled(self, which: int) -> HdrHistogram:
        pending = self.pending[which]
        if pending:
            record_bulk(self.histograms[which], pending)
            pending.clear()
        return self.histograms[which]

    def add(self, other: Tally) -> None:
        """`other`'s counts added to these; its values not yet in a histogram join ours
        as they are, to go into a histogram when first read."""
        for mine, theirs in zip(self.histograms, other.histograms, strict=True):
            if theirs.get_total_count():
                mine.add(theirs)
        for mine_pending, theirs_pending in zip(self.pending, other.pending, strict=True):
            mine_pending.extend(theirs_pending)
        self.outcomes.update(other.outcomes)
        self.statuses.update(other.statuses)

    def to_wire(self) -> dict[str, Any]:
        """Histograms encoded when they hold counts, and values not yet in one as they
        are. A generator never reads its own tallies, so it sends only values: building
        a histogram from 3,200 of them costs about 0.5 ms on a cold cache, three per
        window, and on the generator's loop that time held its sends. The side that
        reads them (the controller, judging the step's windows) builds them instead."""
        return {
            "histograms": [h.encode() if h.get_total_count() else b"" for h in self.histograms],
            "values": list(self.pending),
            "outcomes": dict(self.outcomes),
            "statuses": dict(self.statuses),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Tally:
        encoded = data["histograms"]
        histograms = (_decode(encoded[0]), _decode(encoded[1]), _decode(encoded[2]))
        values = data["values"]
        pending = (list(values[0]), list(values[1]), list(values[2]))
        return cls(Counter(data["outcomes"]), Counter(data["statuses"]), histograms, pending)


def _decode(encoded: bytes) -> HdrHistogram:
    """Decoded into a fresh histogram, so that every histogram has the same geometry;
    empty bytes stand for an empty histogram."""
    histogram = new_histogram()
    if encoded and HdrHistogram.decode(encoded).get_total_count():
        histogram.decode_and_add(encoded)
    return histogram


@dataclass
class Window:
    """One window of one step: answers by variant (keyed by scheduled time), and sends,
    late sends, dropped arrivals, completions (keyed by when they happened) and arrivals
    that had to wait for a connection (keyed by scheduled time)."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    sent: int = 0
    late: int = 0
    dropped: int = 0
    completed: int = 0
    blocked: int = 0
    """Arrivals that found every connection busy: requests were piling up in flight."""

    def tally(self, variant: str) -> Tally:
        found = self.tallies.get(variant)
        if found is None:
            found = self.tallies[variant] = Tally()
        return found

    def add(self, other: Window) -> None:
        for variant, tally in other.tallies.items():
            self.tally(variant).add(tally)
        self.sent += other.sent
        self.late += other.late
        self.dropped += other.dropped
        self.completed += other.completed
        self.blocked += other.blocked

    def merged_tally(self) -> Tally:
        """All variants together (the tally itself when there is one: do not modify)."""
        if len(self.tallies) == 1:
            return next(iter(self.tallies.values()))
        total = Tally()
        for tally in self.tallies.values():
            total.add(tally)
        return total


WindowKey = tuple[int, int]
"""(step id, window index within the step)."""


class Recorder:
    """Collects measurements by window; `take()` hands over what was recorded since."""

    def __init__(self) -> None:
        self.windows: dict[WindowKey, Window] = {}
        self.closed: set[int] = set()

    def window(self, key: WindowKey) -> Window:
        found = self.windows.get(key)
        if found is None:
            found = self.windows[key] = Window()
        return found

    def answer(
        self,
        key: WindowKey,
        variant: str,
        outcome: str,
        status: str,
        from_scheduled_s: float,
        from_sent_s: float,
        server_s: float | None = None,
    ) -> None:
        """One finished request; latencies are recorded for successful answers only, so a
        fast refusal cannot make the percentiles look better (failures are counted).
        `server_s` is the server's own time for it (`Server-Timing` total), if known."""
        tally = self.window(key).tally(variant)
        tally.outcomes[outcome] += 1
        tally.statuses[status] += 1
        if outcome in ("ok", "bad_input"):
            outside = None if server_s is None else round((from_scheduled_s - server_s) * 1e6)
            tally.record(round(from_scheduled_s * 1e6), round(from_sent_s * 1e6), outside)

    def take(self) -> dict[WindowKey, Window]:
        taken, self.windows = self.windows, {}
        return taken

    def merge(self, windows: dict[WindowKey, Window]) -> None:
        for key, window in windows.items():
            if key[0] not in self.closed:
                self.window(key).add(window)

    def discard(self, step: int) -> None:
        """Forget a finished step (its histograms are large); late answers to it, from a
        step that did not wait for them, are ignored from now on."""
        self.closed.add(step)
        self.windows = {k: w for k, w in self.windows.items() if k[0] != step}


def windows_to_wire(windows: dict[WindowKey, Window]) -> list[dict[str, Any]]:
    """A msgpack-friendly form, for Locust's messages between workers and master."""
    return [
        {
            "key": list(key),
            "tallies": {v: t.to_wire() for v, t in w.tallies.items()},
            "counts": [w.sent, w.late, w.dropped, w.completed, w.blocked],
        }
        for key, w in windows.items()
    ]


def windows_from_wire(items: list[dict[str, Any]]) -> dict[WindowKey, Window]:
    windows: dict[WindowKey, Window] = {}
    for item in items:
        tallies = {v: Tally.from_wire(t) for v, t in item["tallies"].items()}
        step, index = item["key"]
        windows[(step, index)] = Window(tallies, *item["counts"])
    return windows

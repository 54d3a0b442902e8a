"""Each worker's evidence journal in the shared folder, and the controller's reader of it.

Publishing costs time proportional to what is new, on both sides. A worker appends the
records it took since its last publication as one line to its current segment
(`samples/<replica>.<n>.jsonl`) and rewrites a small header (`samples/<replica>.json`:
the split version it follows, when it last published, its current segment). The
controller keeps, per worker, the segment and byte offset it has read up to, reads only
what was appended since, and adds the new records to running tallies of the window; a
new window re-filters the records it holds once. A segment that reaches
`segment_records` is closed and a new one begun; the one before the previous is
deleted, so a journal holds at most about two segments, and a reader a segment behind
still finds what it has not read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from service.rollout.judge import ShadowWindow, VariantWindow
from service.rollout.samples import Request
from service.rollout.shared import atomic_write

STALE_S = 5.0
"""A replica whose header is older than this is gone: its evidence still counts, but the
controller no longer waits for it to follow a split."""
ERRORS = frozenset({500, 504})
SHED = 503
Compared = tuple[float, bool, float, float]
"""Wall-clock time, whether the candidate disagreed, the served score, the shadow's."""


class Journal:
    """One worker's side: append its new records, keep its header current."""

    def __init__(self, folder: Path, replica: str, segment_records: int) -> None:
        self.folder = folder
        self.replica = replica
        self.segment_records = segment_records
        self.segment = 0
        self._in_segment = 0
        self.written = False
        """Whether this worker's files exist (so `clear` has something to remove)."""

    def publish(
        self, split_version: int, requests: list[Request], comparisons: list[Compared]
    ) -> None:
        """Append the new records (if any) and rewrite the header; runs on a thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if requests or comparisons:
            line = orjson.dumps({"r": requests, "c": comparisons}) + b"\n"
            with self._segment_path(self.segment).open("ab") as segment:
                segment.write(line)
            self._in_segment += len(requests) + len(comparisons)
            if self._in_segment >= self.segment_records:
                self._rotate()
        header = {
            "replica": self.replica,
            "split_version": split_version,
            "updated": time.time(),
            "segment": self.segment,
        }
        atomic_write(self._header_path(), orjson.dumps(header))
        self.written = True

    def clear(self) -> None:
        """Remove the header and every segment: no rollout, or this worker stops."""
        if not self.written:
            return
        self._header_path().unlink(missing_ok=True)
        for segment in self.folder.glob(f"{self.replica}.*.jsonl"):
            segment.unlink(missing_ok=True)
        self.written = False

    def _rotate(self) -> None:
        self._segment_path(self.segment - 1).unlink(missing_ok=True)
        self.segment += 1
        self._in_segment = 0

    def _header_path(self) -> Path:
        return self.folder / f"{self.replica}.json"

    def _segment_path(self, segment: int) -> Path:
        return self.folder / f"{self.replica}.{segment}.jsonl"


@dataclass(frozen=True)
class ReplicaReport:
    replica: str
    split_version: int
    age_s: float


@dataclass(frozen=True)
class Evidence:
    """Every replica's records since the window opened, merged per variant."""

    baseline: VariantWindow
    candidate: VariantWindow
    shadow: ShadowWindow
    replicas: list[ReplicaReport]

    def live_replicas(self) -> list[ReplicaReport]:
        return [report for report in self.replicas if report.age_s < STALE_S]


class EvidenceReader:
    """The controller's side: every journal read once, merged into one window per
    variant. Not thread-safe; one controller uses it, a call at a time."""

    def __init__(self, folder: Path, baseline: str, candidate: str) -> None:
        self.folder = folder
        self.baseline, self.candidate = baseline, candidate
        self._read_to: dict[str, tuple[int, int]] = {}
        """Per replica, the segment and byte offset read up to."""
        self._since = -1.0
        self._requests: list[Request] = []
        self._comparisons: list[Compared] = []
        self._reset()

    def replicas(self) -> list[ReplicaReport]:
        """Each journal's header: who publishes, at which split version, how recently."""
        now = time.time()
        return [
            ReplicaReport(h["replica"], h["split_version"], now - h["updated"])
            for h in self._headers()
        ]

    def read(self, since: float) -> Evidence:
        """The window from `since` on, with whatever was appended since the last read."""
        if since != self._since:
            self._restart(since)
        headers = self._headers()
        for header in headers:
            self._consume(header["replica"], header["segment"])
        now = time.time()
        reports = [
            ReplicaReport(h["replica"], h["split_version"], now - h["updated"]) for h in headers
        ]
        return Evidence(
            self._windows[self.baseline].freeze(),
            self._windows[self.candidate].freeze(),
            self._shadow.freeze(),
            reports,
        )

    def _headers(self) -> list[dict[str, Any]]:
        headers = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                headers.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # removed by a replica that stopped, between glob and read
        return headers

    def _restart(self, since: float) -> None:
        """A new window: keep the records held that are in it, tally them anew."""
        self._since = since
        requests = [r for r in self._requests if r[0] >= since]
        comparisons = [c for c in self._comparisons if c[0] >= since]
        self._reset()
        self._add(requests, comparisons)

    def _reset(self) -> None:
        self._requests, self._comparisons = [], []
        self._windows = {self.baseline: _Window(), self.candidate: _Window()}
        self._shadow = _Shadow()

    def _consume(self, replica: str, current: int) -> None:
        """Read `replica`'s journal from where the last read stopped up to its end."""
        segment, offset = self._read_to.get(replica) or (self._first_segment(replica, current), 0)
        while True:
            path = self.folder / f"{replica}.{segment}.jsonl"
            try:
                with path.open("rb") as journal:
                    journal.seek(offset)
                    data = journal.read()
            except FileNotFoundError:
                data = b""
            complete = data[: data.rfind(b"\n") + 1]  # a line being appended waits
            offset += len(complete)
            for line in complete.splitlines():
                batch = orjson.loads(line)
                self._add(
                    [r for r in batch["r"] if r[0] >= self._since],
                    [c for c in batch["c"] if c[0] >= self._since],
                )
            if segment >= current:
                break
            segment, offset = segment + 1, 0  # closed by its writer: on to the next
        self._read_to[replica] = (segment, offset)

    def _first_segment(self, replica: str, current: int) -> int:
        numbers = [
            int(number)
            for path in self.folder.glob(f"{replica}.*.jsonl")
            if (number := path.name.removeprefix(f"{replica}.").removesuffix(".jsonl")).isdigit()
        ]
        return min(numbers, default=current)

    def _add(self, requests: list[Any], comparisons: list[Any]) -> None:
        for at, variant, duration_s, status in requests:
            if variant in self._windows:
                self._requests.append((at, variant, duration_s, status))
                self._windows[variant].add(duration_s, status)
        for at, disagreed, served, mirrored in comparisons:
            self._comparisons.append((at, disagreed, served, mirrored))
            self._shadow.add(disagreed, served, mirrored)


class _Window:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.requests = self.errors = self.shed = 0

    def add(self, duration_s: float, status: int) -> None:
        self.requests += 1
        if status == 200:
            self.latencies.append(duration_s)
        elif status in ERRORS:
            self.errors += 1
        elif status == SHED:
            self.shed += 1

    def freeze(self) -> VariantWindow:
        """The window as the judge takes it; shares the running list (no copy per tick)."""
        return VariantWindow(
            latencies_s=self.latencies, requests=self.requests, errors=self.errors, shed=self.shed
        )


class _Shadow:
    def __init__(self) -> None:
        self.disagreed = 0
        self.baseline: list[float] = []
        self.candidate: list[float] = []

    def add(self, disagreed: bool, served: float, mirrored: float) -> None:
        self.disagreed += bool(disagreed)
        self.baseline.append(served)
        self.candidate.append(mirrored)

    def freeze(self) -> ShadowWindow:
        return ShadowWindow(
            compared=len(self.baseline),
            disagreed=self.disagreed,
            baseline_scores=self.baseline,
            candidate_scores=self.candidate,
        )

"""The evidence a rollout is judged on, recorded by every replica and read by the controller.

Behind a load balancer each replica sees only its share of the traffic, so each worker
process keeps its own bounded ring buffers while a rollout runs: one record per routed
prediction of the baseline or the candidate (wall-clock time, server duration, status)
and one per shadow comparison. It writes them every `PUBLISH_S` to a file of its own in
the shared folder, together with the split version it follows. The controller merges
every file into one window per variant. Records older than the current window are
dropped, so the files stay small; a record costs nothing while no rollout runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from service.rollout.judge import ShadowWindow, VariantWindow
from service.rollout.shared import atomic_write

PUBLISH_S = 0.5
STALE_S = 5.0
"""A replica whose file is older than this is gone: its evidence still counts, but the
controller no longer waits for it to follow a split."""
ERRORS = frozenset({500, 504})
SHED = 503


def replica_id() -> str:
    """This worker process, unique across the hosts sharing the folder."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One mirrored row: did the candidate disagree, and both scores."""

    at: float
    disagreed: bool
    baseline_score: float
    candidate_score: float


class SampleRecorder:
    """One worker's ring buffers; `active` is False (and recording free) between rollouts."""

    def __init__(self, capacity: int, per_user: int = 0) -> None:
        self.active = False
        self.variants: tuple[str, str] = ("", "")
        self.since = 0.0
        self.requests: deque[tuple[float, str, float, int]] = deque(maxlen=capacity)
        self.comparisons: deque[Comparison] = deque(maxlen=capacity)
        self.per_user = per_user
        """Records one user id may add per window (0: no cap)."""
        self._buckets = capacity
        self._per_bucket: dict[int, int] = {}

    def follow(self, baseline: str, candidate: str, since: float) -> None:
        """Record these two variants from `since` on (a new window drops older records)."""
        if (baseline, candidate) != self.variants or since != self.since:
            self.variants, self.since = (baseline, candidate), since
            self._drop_before(since)
            self._per_bucket.clear()
        self.active = True

    def stop(self) -> None:
        self.active = False
        self.requests.clear()
        self.comparisons.clear()
        self._per_bucket.clear()

    def admit(self, user_id: bytes | None) -> bool:
        """Whether a routed request of `user_id` may count as evidence in this window.

        A user id picks its variant (sticky routing), so a client that tries ids until
        one lands on the candidate could otherwise fill the window with requests of its
        choosing. Ids are hashed into as many buckets as the buffers hold records, which
        bounds the memory; requests without an id are split at random and always count."""
        if user_id is None or not self.per_user:
            return True
        bucket = hash(user_id) % self._buckets
        count = self._per_bucket.get(bucket, 0)
        if count >= self.per_user:
            return False
        self._per_bucket[bucket] = count + 1
        return True

    def record(self, variant: str, duration_s: float, status: int) -> None:
        """One routed prediction request, as the client saw its outcome."""
        if variant in self.variants:
            self.requests.append((time.time(), variant, duration_s, status))

    def compare(
        self, disagreed: Iterable[bool], baseline: Iterable[float], candidate: Iterable[float]
    ) -> None:
        """Mirrored rows: whether each disagreed, and each one's score from both variants."""
        now = time.time()
        for differs, served, mirrored in zip(disagreed, baseline, candidate, strict=True):
            self.comparisons.append(Comparison(now, bool(differs), float(served), float(mirrored)))

    def snapshot(self, replica: str, split_version: int) -> dict[str, Any]:
        """What this worker publishes: who it is, the split it follows, its records.

        Copied on the event loop (the buffers change under it); encoded elsewhere."""
        return {
            "replica": replica,
            "split_version": split_version,
            "updated": time.time(),
            "requests": list(self.requests),
            "comparisons": [
                (c.at, c.disagreed, c.baseline_score, c.candidate_score) for c in self.comparisons
            ],
        }

    def _drop_before(self, since: float) -> None:
        while self.requests and self.requests[0][0] < since:
            self.requests.popleft()
        while self.comparisons and self.comparisons[0].at < since:
            self.comparisons.popleft()


def publish(folder: Path, snapshot: dict[str, Any]) -> None:
    """Replace this replica's file whole, so the controller never reads half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{snapshot['replica']}.json", orjson.dumps(snapshot))


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


def read_evidence(folder: Path, baseline: str, candidate: str, since: float) -> Evidence:
    """Merge every replica's file: the records of `since` and later."""
    now = time.time()
    windows: dict[str, _Window] = {baseline: _Window(), candidate: _Window()}
    shadow = _Shadow()
    replicas: list[ReplicaReport] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            report: dict[str, Any] = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # removed by a replica that stopped, between glob and read
        replicas.append(
            ReplicaReport(report["replica"], report["split_version"], now - report["updated"])
        )
        for at, variant, duration_s, status in report["requests"]:
            if at >= since and variant in windows:
                windows[variant].add(duration_s, status)
        for at, disagreed, served, mirrored in report["comparisons"]:
            if at >= since:
                shadow.add(disagreed, served, mirrored)
    return Evidence(
        windows[baseline].freeze(), windows[candidate].freeze(), shadow.freeze(), replicas
    )


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

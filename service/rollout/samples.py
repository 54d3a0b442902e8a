"""The evidence a rollout is judged on, as each worker records it.

Behind a load balancer each replica sees only its share of the traffic, so each worker
process records, while a rollout runs, one record per routed prediction of the baseline
or the candidate (wall-clock time, server duration, status) and one per shadow
comparison. The records wait in bounded buffers until the worker's next publication
(every `TICK_S`), which appends them to its journal in the shared folder
(service/rollout/journal.py), where the controller reads them. Records older than the
current window are dropped; a record costs nothing while no rollout runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


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


Request = tuple[float, str, float, int]
"""Wall-clock time, variant, server duration in seconds, HTTP status."""


class SampleRecorder:
    """One worker's buffers of records not yet published, bounded (the oldest go first
    should publishing fall behind); `active` is False (and recording free) between
    rollouts."""

    def __init__(self, capacity: int, per_user: int = 0) -> None:
        self.active = False
        self.variants: tuple[str, str] = ("", "")
        self.since = 0.0
        self.requests: deque[Request] = deque(maxlen=capacity)
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

    def take(self) -> tuple[list[Request], list[tuple[float, bool, float, float]]]:
        """Every record since the last take, emptying the buffers: what the worker
        publishes next. On the event loop, in time proportional to the new records."""
        requests = list(self.requests)
        self.requests.clear()
        comparisons = [
            (c.at, c.disagreed, c.baseline_score, c.candidate_score) for c in self.comparisons
        ]
        self.comparisons.clear()
        return requests, comparisons

    def _drop_before(self, since: float) -> None:
        while self.requests and self.requests[0][0] < since:
            self.requests.popleft()
        while self.comparisons and self.comparisons[0].at < since:
            self.comparisons.popleft()

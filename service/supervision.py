"""Background loops that log and survive their own exceptions, and say when they cannot.

A loop that dies silently is the worst failure a replica can have: a split follower that
stopped on one second of an unreadable file leaves the replica on an old split for good,
with nothing in its log. So every background loop of the service (the split follower,
the rollout follower, the metrics flush, the watchdog) runs its step through
`supervise`, and every shadow comparison through `LoopHealth.guard`: an exception is
logged with its traceback when a run of failures begins, again every `REPEAT_LOG_S`
while it lasts, and once more when the loop recovers; the loop goes on regardless.

Health is exported per loop (`perfserve_background_loop_healthy`, and
`perfserve_background_loop_failures_total`), and a loop that has been failing for
longer than `unready_after_s` makes `/readyz` answer 503: an orchestrator then stops
sending it traffic, as Kubernetes controllers report a reconcile that keeps failing.
A loop counts as failing while its last run failed and that failure is recent, so an
event-driven one (the shadow) that stops receiving events does not stay unready.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

log = logging.getLogger("perfserve")

REPEAT_LOG_S = 60.0
"""While a loop keeps failing, its error is logged again this often, not on every run."""


@dataclass
class _Failing:
    since: float
    last: float
    logged: float


class LoopHealth:
    """Which loops are failing and since when (`time.monotonic()` seconds)."""

    def __init__(self, healthy: Gauge, failures: Counter, unready_after_s: float) -> None:
        self.healthy = healthy
        self.failures = failures
        self.unready_after_s = unready_after_s
        self._failing: dict[str, _Failing] = {}

    def register(self, name: str) -> None:
        """Export the loop as healthy before its first run."""
        self.healthy.labels(name).set(1)

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Run one step of loop `name`: its exception is logged and recorded, not raised
        (cancellation still is)."""
        try:
            yield
        except Exception as error:
            self.failed(name, error)
        else:
            self.succeeded(name)

    def succeeded(self, name: str) -> None:
        failing = self._failing.pop(name, None)
        if failing is not None:
            log.warning(
                "background loop %s recovered after %.1f s of failures",
                name,
                time.monotonic() - failing.since,
            )
            self.healthy.labels(name).set(1)

    def failed(self, name: str, error: Exception) -> None:
        now = time.monotonic()
        self.failures.labels(name).inc()
        self.healthy.labels(name).set(0)
        failing = self._failing.get(name)
        if failing is None:
            self._failing[name] = _Failing(since=now, last=now, logged=now)
            log.error("background loop %s failed; it carries on", name, exc_info=error)
            return
        failing.last = now
        if now - failing.logged >= REPEAT_LOG_S:
            failing.logged = now
            log.error(
                "background loop %s still failing after %.0f s: %s: %s",
                name,
                now - failing.since,
                type(error).__name__,
                error,
            )

    def unready(self) -> list[str]:
        """Loops failing for longer than the bound, each with how long."""
        now = time.monotonic()
        bound = self.unready_after_s
        return [
            f"background loop {name} failing for {now - failing.since:.0f} s"
            for name, failing in self._failing.items()
            if now - failing.since > bound and now - failing.last <= bound
        ]


async def supervise(
    name: str, step: Callable[[], Awaitable[None] | None], period_s: float, health: LoopHealth
) -> None:
    """Run `step` (a function or a coroutine function) every `period_s` for as long as
    the task lives, whatever it raises."""
    health.register(name)
    while True:
        with health.guard(name):
            if inspect.isawaitable(done := step()):
                await done
        await asyncio.sleep(period_s)

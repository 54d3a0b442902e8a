"""Rollouts under load for tests: steady concurrent users, and judge thresholds that a
short test's traffic can meet."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

# Thresholds a short test can meet: ~300 answers per variant per gate (see the judge);
# the absolute SLO is the loaded test machine's, not production's.
POLICY = {
    "slo_p99_s": 1.0,
    "family_alpha": 0.05,
    "detect_factor": 6.0,
    "latency_superiority": 0.7,
    "score_shift_detect": 0.25,
}


class Load:
    """Concurrent users spreading requests round-robin over `urls` (replicas, or one load
    balancer), in a thread, until stopped; counts every status, served variant and
    transport error."""

    def __init__(self, urls: Sequence[str], payload: dict[str, Any], users: int = 6) -> None:
        self.urls, self.payload, self.users = list(urls), payload, users
        self.outcomes: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:

            async def user(index: int) -> None:
                sent = index
                while not self._stop.is_set():
                    url = self.urls[sent % len(self.urls)]
                    sent += 1
                    try:
                        response = await client.post(f"{url}/predict", json=self.payload)
                        self.outcomes[response.status_code] += 1
                        self.outcomes[response.headers.get("x-variant", "none")] += 1
                    except httpx.HTTPError as error:
                        self.outcomes[type(error).__name__] += 1

            await asyncio.gather(*(user(i) for i in range(self.users)))

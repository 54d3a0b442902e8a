"""Reading request bodies with a size limit and a deadline, cheaply enough for the hot path.

A client that sends its body slowly must not hold a connection, a task and up to the
body limit in memory indefinitely. A timer per request (`asyncio.timeout`) costs a few
microseconds on uvloop, a noticeable share of a prediction; instead each read registers
its deadline in a dict, and the service's watchdog, which wakes a few times a second
anyway, cancels the reads that outlast theirs. A late client's 408 comes up to one
watchdog period after its deadline, which is what a deadline of seconds can afford.

A worker also bounds the prediction body bytes it holds at once (`BodyBudget`): each
body is bounded, but so many of them may be read at once (limit_concurrency of them)
that together they pass the pod's memory. A body that would pass the budget is refused
with 503 before any of it is read, and its share is given back once it is parsed or
its request fails, times out or is abandoned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.payload import Reject

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyDeadlines:
    """The body reads in progress and their deadlines (`time.perf_counter()` seconds)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    async def read(self, receive: Receive, limit: int, started: float) -> bytes:
        """The whole body, or `Reject`: 413 past `limit` bytes, 408 when it has not arrived
        `timeout_s` after `started`, 400 when the client went away."""
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = started + self.timeout_s
        try:
            return await read_body(receive, limit)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise Reject(
                408, "slow_client", f"the request body did not arrive within {self.timeout_s:g} s"
            ) from None
        finally:
            self._reading.pop(task, None)

    def sweep(self, now: float) -> None:
        """Cancel every read whose deadline has passed; called by the service's watchdog."""
        late = [task for task, deadline in self._reading.items() if deadline <= now]
        for task in late:
            del self._reading[task]
            self._expired.add(task)
            task.cancel()


class BodyBudget:
    """Prediction body bytes this worker holds now, against `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        """Hold `size` more bytes, or `Reject` with 503 when they would pass the limit."""
        if self.held + size > self.limit:
            raise Reject(
                503,
                "body_budget",
                f"this server is reading {self.held} bytes of request bodies, and its "
                f"budget is {self.limit}; retry shortly",
                retry_after=1,
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


async def read_body(receive: Receive, limit: int) -> bytes:
    """The body of one request, refused with 413 as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Reject(400, "invalid_input", "client disconnected before sending the body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Reject(413, "too_large", f"body exceeds {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)

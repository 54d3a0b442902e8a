"""Adaptive micro-batching: concurrent requests for one variant share one model call.

The batcher never makes a lone request wait: when the runner is idle, the first request
to arrive starts a batch at once. Only under load, when the last batch carried several
requests, does it gather: it yields to the event loop, letting handlers that are reading
and parsing requests queue them, for as long as each pass brings new rows, up to
`max_batch_size` rows or `max_batch_delay_s`. Yielding rather than sleeping matters:
uvloop's timers tick in milliseconds, far coarser than a batch of small requests.

The queue is bounded: past `max_queue` waiting requests, `submit` refuses at once, so an
overloaded server sheds load in microseconds instead of queueing it into timeouts. With a
queue deadline, a request that has already waited longer than the latency objective
allows when a batch could take it is refused too, before any model work: after a stall,
the backlog is answered by fast refusals instead of by late answers that keep the
requests behind it late as well.

All times are `time.perf_counter()` seconds (monotonic).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

import numpy as np

from service.guards import finite_answers
from service.metrics import VariantMetrics
from service.runtimes import Prediction, Runner

log = logging.getLogger("perfserve")

# A request read from a socket is parsed and queued one loop pass after it arrives, so
# gathering stops only after two passes in a row bring nothing new.
QUIET_PASSES = 2


class QueueFull(Exception):
    """The variant's queue holds `max_queue` requests already."""


class DeadlineExceeded(Exception):
    """The request was still queued when its deadline passed."""


class WaitedTooLong(Exception):
    """The request had waited in the queue past `queue_deadline_s` when a batch could take
    it: an answer now would come too late for the latency objective, so none is computed."""


class BatchFailed(Exception):
    """The model call for the request's batch raised; every request of the batch gets this."""


class ShuttingDown(Exception):
    """The batcher no longer admits requests."""


class VariantUnavailable(Exception):
    """The variant cannot answer now: its batch loop stopped, or its model call hangs."""


class InvalidRows(Exception):
    """The request holds a row that failed its batch's screen; its batch-mates were
    computed without it. The caller says which value is wrong, from its own rows."""


Screen = Callable[[np.ndarray], "np.ndarray | None"]
"""Given a batch's float32 rows: None when all may be computed, else a mask of the bad ones."""
Observe = Callable[[np.ndarray], None]
"""Given the float32 rows a batch computes (after the screen): keep them for later (drift)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's share of a batch, with the timings its response reports."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    queue_s: float
    infer_s: float
    batch_rows: int
    finite: bool = True
    """False when some answer of the batch is not a finite number (maybe this request's)."""


@dataclass(slots=True, eq=False)
class PendingRequest:
    rows: np.ndarray
    future: asyncio.Future[BatchResult]
    enqueued_at: float
    deadline: float


def take_batch(
    queue: deque[PendingRequest], max_rows: int, now: float, queued_since: float = -math.inf
) -> tuple[list[PendingRequest], list[PendingRequest]]:
    """Pop whole requests from the head, up to `max_rows` rows (always at least one
    request), and separately those not worth computing: their deadline passed while they
    waited, they were queued before `queued_since` (the queue deadline), or nobody awaits
    the answer any more (answered by the watchdog, or cancelled when shutdown ran out of
    grace)."""
    batch: list[PendingRequest] = []
    expired: list[PendingRequest] = []
    rows = 0
    while queue:
        head = queue[0]
        if head.deadline <= now or head.enqueued_at < queued_since or head.future.done():
            expired.append(queue.popleft())
            continue
        size = len(head.rows)
        if batch and rows + size > max_rows:
            break
        batch.append(queue.popleft())
        rows += size
    return batch, expired


class MicroBatcher:
    """One variant's queue and the loop that feeds its runner, one batch at a time.

    Batches run on a dedicated thread, so the event loop keeps parsing and answering
    requests while the model computes, or `inline` on the loop itself: on a single core
    the thread cannot run in parallel anyway, and handing each batch over costs two
    context switches (measured in docs/PERFORMANCE.md).

    No request can stall the variant: whatever fails while a batch is handled (joining
    rows, the model call, recording, delivering) reaches that batch's requests and the
    loop goes on. Should the loop end all the same, every waiting request is failed and
    the variant reports itself `unavailable`. A model call running longer than
    `hung_after_s` marks the variant unavailable too until it returns; meanwhile `reap`
    fails the requests whose deadline passed (only possible with a runner thread: an
    inline call that hangs holds the event loop itself).
    """

    def __init__(
        self,
        name: str,
        runner: Runner,
        metrics: VariantMetrics,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue: int,
        hung_after_s: float = float("inf"),
        inline: bool = False,
        screen: Screen | None = None,
        observe: Observe | None = None,
        added_latency_s: float = 0.0,
        queue_deadline_s: float = math.inf,
    ) -> None:
        self.name = name
        self.runner = runner
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queue = max_queue
        self.hung_after_s = hung_after_s
        self.inline = inline
        self.screen = screen
        self.observe = observe
        self.added_latency_s = added_latency_s
        """Injected fault: every batch takes this much longer (see service/faults.py)."""
        self.queue_deadline_s = queue_deadline_s
        """Longest a request may have waited in the queue when a batch takes it; the
        longer-waiting get `WaitedTooLong` instead of model work."""
        self.closed = False
        self.failure: str | None = None
        self._queue: deque[PendingRequest] = deque()
        self._queued_rows = 0
        self._last_batch_requests = 1
        self._batch: list[PendingRequest] = []
        self._batch_started: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"runner-{name}")
        metrics.folding.gauge(metrics.queue_depth, self._queue.__len__)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now (not counting the one computing)."""
        return len(self._queue)

    @property
    def unavailable(self) -> str | None:
        """Why the variant cannot answer now, or None when it can."""
        if self.failure is not None:
            return self.failure
        started = self._batch_started
        if started is not None and (running := time.perf_counter() - started) > self.hung_after_s:
            return f"its model call has been running for {running:.1f} s"
        return None

    def start(self) -> None:
        """Start the batch loop; must be called inside the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batch-{self.name}")
        self._task.add_done_callback(self._loop_ended)

    def submit(self, rows: np.ndarray, deadline: float) -> asyncio.Future[BatchResult]:
        """Queue rows for the next batch; the future resolves with this request's answers.

        The request's queueing delay counts from here; its deadline from wherever the
        caller started the clock (for the service, the request's arrival)."""
        if self.closed:
            raise ShuttingDown(self.name)
        # Cheap on the hot path: the clock is read only while a model call runs.
        if (self._batch_started is not None or self.failure is not None) and (
            reason := self.unavailable
        ) is not None:
            raise VariantUnavailable(reason)
        if len(self._queue) >= self.max_queue:
            raise QueueFull(self.name)
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingRequest(rows, future, time.perf_counter(), deadline))
        self._queued_rows += len(rows)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return future

    def reap(self, now: float) -> None:
        """Fail requests whose deadline passed while a model call holds the loop: those in
        the running batch and those queued behind it. The loop expires queued requests
        itself whenever it is free to look."""
        if self._batch_started is None:
            return
        for pending in (*self._batch, *self._queue):
            if pending.deadline <= now and not pending.future.done():
                pending.future.set_exception(DeadlineExceeded(self.name))

    async def close(self, timeout_s: float) -> None:
        """Stop admitting, finish what was admitted (up to `timeout_s`), then stop the loop."""
        self.closed = True
        give_up = time.perf_counter() + timeout_s
        while (self._queue or self._batch) and time.perf_counter() < give_up:
            await asyncio.sleep(0.005)
        # A loop that already ended (its error reported by `_loop_ended`) has nothing to
        # stop: awaiting it would raise its error again and fail the whole shutdown.
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiting(ShuttingDown(self.name))
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        while True:
            await self._gather()
            now = time.perf_counter()
            queued_since = now - self.queue_deadline_s
            batch, expired = take_batch(self._queue, self.max_batch_size, now, queued_since)
            for pending in (*batch, *expired):
                self._queued_rows -= len(pending.rows)
            for pending in expired:
                if not pending.future.done():
                    late = pending.deadline > now  # queued too long, not past its deadline
                    error = WaitedTooLong if late else DeadlineExceeded
                    pending.future.set_exception(error(self.name))
            if not batch:
                continue
            self._batch = batch  # until answered: whatever ends the loop fails it too
            try:
                await self._execute(batch)
            except Exception as error:
                # Logged once per batch, with the traceback; clients get a generic answer.
                log.exception("variant %s: a batch of %d request(s) failed", self.name, len(batch))
                failed = BatchFailed(f"{type(error).__name__}: {error}")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(failed)
            self._batch = []

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """The loop ended other than by `close`: no request may wait for it in vain."""
        if self.closed:
            return
        error = None if task.cancelled() else task.exception()
        self.failure = f"its batch loop stopped ({type(error).__name__ if error else 'cancelled'})"
        log.error("variant %s: %s", self.name, self.failure, exc_info=error)
        self._fail_waiting(VariantUnavailable(self.failure))

    def _fail_waiting(self, error: Exception) -> None:
        for pending in (*self._batch, *self._queue):
            if not pending.future.done():
                pending.future.set_exception(error)
        self._queue.clear()
        self._queued_rows = 0

    async def _gather(self) -> None:
        """Return when the next batch should start (see the module docstring)."""
        if not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._last_batch_requests <= 1 or self.max_batch_delay_s <= 0:
            return
        give_up = time.perf_counter() + self.max_batch_delay_s
        quiet = 0
        while (
            quiet < QUIET_PASSES
            and self._queued_rows < self.max_batch_size
            and time.perf_counter() < give_up
        ):
            rows = self._queued_rows
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._queued_rows == rows else 0

    async def _execute(self, batch: list[PendingRequest]) -> None:
        batch, rows = self._screened(batch)
        if not batch:
            return
        if self.observe is not None:
            self.observe(rows)
        self._batch_started = started = time.perf_counter()
        slept = 0.0
        try:
            if self.added_latency_s:
                # A wait that leaves the event loop, and so other variants, running; again
                # for what is left, as uvloop's millisecond timers may fire a little early.
                while (slept := time.perf_counter() - started) < self.added_latency_s:
                    await asyncio.sleep(self.added_latency_s - slept)
            if self.inline:
                prediction, infer_s = self._timed_predict(rows)
            else:
                prediction, infer_s = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._timed_predict, rows
                )
            infer_s += slept  # the injected wait counts as the model's compute
        finally:
            self._batch_started = None
        if len(prediction.labels) != len(rows):
            raise RuntimeError(
                f"model returned {len(prediction.labels)} answers for {len(rows)} rows"
            )
        self._last_batch_requests = len(batch)
        self._record(batch, started, infer_s, len(rows))
        self._deliver(batch, prediction, started, infer_s, len(rows))

    def _screened(self, batch: list[PendingRequest]) -> tuple[list[PendingRequest], np.ndarray]:
        """The batch's rows as one float32 matrix, cast and screened once for the whole
        batch; requests holding a row the screen refuses get `InvalidRows` and leave it."""
        with np.errstate(over="ignore"):  # beyond float32's range: inf, which the screen sees
            rows = np.concatenate([p.rows for p in batch], dtype=np.float32, casting="same_kind")
        if self.screen is None or (bad := self.screen(rows)) is None:
            return batch, rows
        sizes = [len(pending.rows) for pending in batch]
        refused = np.logical_or.reduceat(bad, np.cumsum([0, *sizes[:-1]]))
        kept = []
        for pending, refuse in zip(batch, refused, strict=True):
            if not refuse:
                kept.append(pending)
            elif not pending.future.done():
                pending.future.set_exception(InvalidRows(self.name))
        return kept, rows[np.repeat(~refused, sizes)]

    def _timed_predict(self, rows: np.ndarray) -> tuple[Prediction, float]:
        started = time.perf_counter()
        prediction = self.runner.predict(rows)
        return prediction, time.perf_counter() - started

    def _record(
        self, batch: list[PendingRequest], started: float, infer_s: float, rows: int
    ) -> None:
        metrics = self.metrics
        metrics.inference_duration.observe(infer_s)
        metrics.infer.observe(infer_s)
        metrics.batch_size.observe(rows)
        metrics.busy.inc(infer_s)
        for pending in batch:
            metrics.queue_duration.observe(started - pending.enqueued_at)

    @staticmethod
    def _deliver(
        batch: list[PendingRequest],
        prediction: Prediction,
        started: float,
        infer_s: float,
        rows: int,
    ) -> None:
        finite = finite_answers(prediction.labels, prediction.probabilities)
        offset = 0
        for pending in batch:
            end = offset + len(pending.rows)
            probabilities = prediction.probabilities
            result = BatchResult(
                prediction.labels[offset:end],
                None if probabilities is None else probabilities[offset:end],
                started - pending.enqueued_at,
                infer_s,
                rows,
                finite,
            )
            if not pending.future.done():
                pending.future.set_result(result)
            offset = end

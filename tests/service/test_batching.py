"""The micro-batcher on its own: collection rules, batching under concurrency, errors.

Most tests use a real ONNX runner; those that need to decide when the runner is busy use
`GatedRunner`, a stand-in model whose calls finish when the test says so: no sleep stands
in for synchronisation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.batching import (
    BatchFailed,
    DeadlineExceeded,
    InvalidRows,
    MicroBatcher,
    PendingRequest,
    QueueFull,
    Screen,
    ShuttingDown,
    VariantUnavailable,
    WaitedTooLong,
    take_batch,
)
from service.metrics import Metrics
from service.runtimes import Prediction, Runner, SlowedRunner, open_runner
from service.store import Dataset
from tests.utils import eventually_async
from tests.utils.runners import ScalarOutputRunner

FAR = float("inf")


def pending(rows: int, deadline: float = FAR) -> PendingRequest:
    future = asyncio.get_running_loop().create_future()
    return PendingRequest(np.zeros((rows, 2), np.float32), future, 0.0, deadline)


async def test_take_batch_takes_whole_requests_up_to_the_row_limit() -> None:
    queue = deque([pending(3), pending(3), pending(3)])
    batch, expired = take_batch(queue, max_rows=7, now=0.0)
    assert [len(p.rows) for p in batch] == [3, 3]
    assert not expired and len(queue) == 1


async def test_take_batch_always_takes_one_request_even_if_oversized() -> None:
    queue = deque([pending(10), pending(1)])
    batch, _ = take_batch(queue, max_rows=4, now=0.0)
    assert [len(p.rows) for p in batch] == [10]


async def test_take_batch_separates_requests_past_their_deadline() -> None:
    late, on_time = pending(1, deadline=1.0), pending(1, deadline=5.0)
    batch, expired = take_batch(deque([late, on_time]), max_rows=8, now=2.0)
    assert batch == [on_time] and expired == [late]


async def test_take_batch_separates_requests_queued_before_the_queue_deadline() -> None:
    waited, fresh = pending(1), pending(1)
    fresh.enqueued_at = 1.5
    batch, expired = take_batch(deque([waited, fresh]), max_rows=8, now=2.0, queued_since=1.0)
    assert batch == [fresh] and expired == [waited]


async def test_take_batch_skips_requests_nobody_awaits() -> None:
    abandoned, waiting = pending(1), pending(1)
    abandoned.future.cancel()
    batch, expired = take_batch(deque([abandoned, waiting]), max_rows=8, now=0.0)
    assert batch == [waiting] and expired == [abandoned]


def make_batcher(
    runner: Runner,
    metrics: Metrics | None = None,
    inline: bool = False,
    screen: Screen | None = None,
    **limits: float,
) -> MicroBatcher:
    settings: dict[str, float] = {
        "max_batch_size": 64,
        "max_batch_delay_s": 0.002,
        "max_queue": 1024,
        "hung_after_s": float("inf"),
        "queue_deadline_s": float("inf"),
    }
    settings.update(limits)
    batcher = MicroBatcher(
        "test",
        runner,
        (metrics or Metrics(CollectorRegistry())).for_variant("test"),
        max_batch_size=int(settings["max_batch_size"]),
        max_batch_delay_s=settings["max_batch_delay_s"],
        max_queue=int(settings["max_queue"]),
        hung_after_s=settings["hung_after_s"],
        queue_deadline_s=settings["queue_deadline_s"],
        inline=inline,
        screen=screen,
    )
    batcher.start()
    return batcher


@pytest.fixture
def onnx(store: Path) -> Runner:
    return open_runner(store / "onnx_fp32/model.onnx", "onnx", "classification")


async def test_concurrent_requests_share_batches_and_get_their_own_rows(
    onnx: Runner, holdout: Dataset
) -> None:
    slow = SlowedRunner(onnx, 0.005)  # keeps the runner busy while requests pile up
    batcher = make_batcher(slow)
    rows = holdout.features[:40]
    deadline = time.perf_counter() + 10
    results = await asyncio.gather(*(batcher.submit(rows[i : i + 1], deadline) for i in range(40)))
    expected = onnx.predict(rows).labels
    assert [int(r.labels[0]) for r in results] == expected.tolist()
    assert max(r.batch_rows for r in results) > 1
    await batcher.close(1.0)


async def test_batch_size_one_turns_batching_off(onnx: Runner, holdout: Dataset) -> None:
    batcher = make_batcher(SlowedRunner(onnx, 0.002), max_batch_size=1)
    deadline = time.perf_counter() + 10
    results = await asyncio.gather(
        *(batcher.submit(holdout.features[i : i + 1], deadline) for i in range(10))
    )
    assert {r.batch_rows for r in results} == {1}
    await batcher.close(1.0)


async def test_a_lone_request_is_dispatched_without_waiting(onnx: Runner, holdout: Dataset) -> None:
    batcher = make_batcher(onnx, max_batch_delay_s=60.0)
    result = await batcher.submit(holdout.features[:1], time.perf_counter() + 120)
    assert result.queue_s < 10  # a minute was allowed: it did not wait for batch-mates
    await batcher.close(1.0)


async def test_a_full_queue_refuses_at_once(onnx: Runner, holdout: Dataset) -> None:
    batcher = make_batcher(SlowedRunner(onnx, 0.05), max_batch_size=1, max_queue=2)
    deadline = time.perf_counter() + 10
    admitted = [batcher.submit(holdout.features[:1], deadline) for _ in range(2)]
    with pytest.raises(QueueFull):
        batcher.submit(holdout.features[:1], deadline)
    await asyncio.gather(*admitted)
    await batcher.close(1.0)


async def test_requests_past_their_deadline_are_not_computed(
    onnx: Runner, holdout: Dataset
) -> None:
    batcher = make_batcher(SlowedRunner(onnx, 0.05), max_batch_size=1)
    deadline = time.perf_counter() + 0.02
    first = batcher.submit(holdout.features[:1], time.perf_counter() + 10)
    late = batcher.submit(holdout.features[:1], deadline)
    await first
    with pytest.raises(DeadlineExceeded):
        await late
    await batcher.close(1.0)


class FailingRunner:
    """A model that raises, as a corrupt or mismatched model would."""

    def predict(self, rows: np.ndarray) -> Prediction:
        raise RuntimeError("weights are corrupt")


async def test_an_error_reaches_every_request_of_the_batch(holdout: Dataset) -> None:
    batcher = make_batcher(FailingRunner())
    deadline = time.perf_counter() + 10
    futures = [batcher.submit(holdout.features[:1], deadline) for _ in range(5)]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(o, BatchFailed) and "weights are corrupt" in str(o) for o in outcomes)
    await batcher.close(1.0)


async def test_close_finishes_admitted_work_then_refuses(onnx: Runner, holdout: Dataset) -> None:
    batcher = make_batcher(SlowedRunner(onnx, 0.01), max_batch_size=1)
    admitted = [batcher.submit(holdout.features[:1], time.perf_counter() + 10) for _ in range(3)]
    await batcher.close(5.0)
    assert all(f.done() and f.exception() is None for f in admitted)
    with pytest.raises(ShuttingDown):
        batcher.submit(holdout.features[:1], time.perf_counter() + 10)


async def test_a_failure_outside_the_model_call_fails_its_batch_not_the_loop(
    onnx: Runner, holdout: Dataset
) -> None:
    batcher = make_batcher(ScalarOutputRunner(onnx))
    deadline = time.perf_counter() + 10
    with pytest.raises(BatchFailed, match="IndexError"):
        await batcher.submit(holdout.features[:2], deadline)
    later = await batcher.submit(holdout.features[:2], deadline)
    assert later.labels.tolist() == onnx.predict(holdout.features[:2]).labels.tolist()
    assert batcher.unavailable is None
    await batcher.close(1.0)


async def test_a_dead_loop_fails_waiting_requests_and_marks_the_variant_unavailable(
    onnx: Runner, holdout: Dataset
) -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner, max_batch_size=1)
    deadline = time.perf_counter() + 10
    waiting = [batcher.submit(numbered(i), deadline) for i in range(3)]
    await runner.wait_busy()  # the first request's model call is running
    assert batcher._task is not None
    batcher._task.cancel()  # the loop ends as an escaped error would end it
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert all(isinstance(o, VariantUnavailable) for o in outcomes)
    assert batcher.unavailable is not None and "batch loop stopped" in batcher.unavailable
    with pytest.raises(VariantUnavailable):
        batcher.submit(numbered(9), deadline)
    runner.gate.set()
    await batcher.close(1.0)


async def test_a_loop_dead_of_an_error_still_closes_cleanly(
    onnx: Runner, holdout: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = make_batcher(onnx, max_batch_size=1)

    async def broken() -> None:
        raise RuntimeError("a bug outside the per-batch guard")

    monkeypatch.setattr(batcher, "_gather", broken)
    waiting = batcher.submit(holdout.features[:1], time.perf_counter() + 10)
    with pytest.raises(VariantUnavailable):
        await asyncio.wait_for(waiting, 5)
    await batcher.close(1.0)  # the loop's error is not the shutdown's


async def test_a_hung_model_call_is_bounded_by_the_deadlines(
    onnx: Runner, holdout: Dataset
) -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner, max_batch_size=1, hung_after_s=0.1)
    short = time.perf_counter() + 0.1
    running = batcher.submit(numbered(0), short)
    queued = batcher.submit(numbered(1), short)
    await runner.wait_busy()
    await eventually_async(lambda: batcher.unavailable is not None, 10)
    assert "running for" in str(batcher.unavailable)  # past hung_after_s, and so past both
    batcher.reap(time.perf_counter())  # deadlines: what the service's watchdog then does
    for future in (running, queued):
        assert future.done() and isinstance(future.exception(), DeadlineExceeded)
    with pytest.raises(VariantUnavailable):
        batcher.submit(numbered(2), time.perf_counter() + 10)
    runner.gate.set()  # the hung call returns: the variant serves again
    await eventually_async(lambda: batcher.unavailable is None, 10)
    answered = await batcher.submit(numbered(3), time.perf_counter() + 10)
    assert answered.labels.tolist() == [3]
    await batcher.close(5.0)


class GatedRunner:
    """A model whose calls finish when the test opens the gate, so a test decides how long
    the runner stays busy. It answers each row with its first feature, so every request
    can check that it got its own rows back, and records the rows of every call."""

    def __init__(self, *, drop_one: bool = False) -> None:
        self.busy = threading.Event()
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.drop_one = drop_one

    def predict(self, rows: np.ndarray) -> Prediction:
        self.calls.append(len(rows))
        self.threads.add(threading.get_ident())
        self.busy.set()
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        labels = rows[:, 0].astype(np.int64)
        return Prediction(labels[:-1] if self.drop_one else labels, None)

    async def wait_busy(self) -> None:
        """Return once a call has started (it then holds the runner until the gate opens)."""
        assert await asyncio.to_thread(self.busy.wait, 10), "the runner was never called"


def numbered(first: int, rows: int = 1) -> np.ndarray:
    """`rows` rows whose first features are first, first + 1, ..."""
    return np.arange(first, first + rows, dtype=np.float32).reshape(rows, 1)


async def test_requests_queued_while_the_runner_is_busy_share_the_next_batch() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner)
    first = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    queued = [batcher.submit(numbered(i), FAR) for i in range(1, 11)]
    runner.gate.set()
    results = await asyncio.gather(first, *queued)
    assert runner.calls == [1, 10]
    assert [r.labels.tolist() for r in results] == [[i] for i in range(11)]
    assert [r.batch_rows for r in results] == [1] + [10] * 10
    await batcher.close(1.0)


async def test_batches_take_whole_requests_up_to_the_row_limit() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner, max_batch_size=8)
    first = batcher.submit(numbered(0, 3), FAR)
    await runner.wait_busy()
    queued = [batcher.submit(numbered(3 * i, 3), FAR) for i in range(1, 7)]
    runner.gate.set()
    results = await asyncio.gather(first, *queued)
    assert runner.calls == [3, 6, 6, 6]  # a third request of 3 rows would make 9 > 8
    assert [r.labels.tolist() for r in results] == [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(7)]
    await batcher.close(1.0)


def negative_rows(rows: np.ndarray) -> np.ndarray | None:
    """A screen that refuses rows whose first feature is negative."""
    bad = rows[:, 0] < 0
    return bad if bad.any() else None


async def test_a_request_with_a_screened_row_fails_alone_and_is_never_computed() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner, screen=negative_rows)
    first = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    before = batcher.submit(numbered(1, 2), FAR)
    refused = batcher.submit(np.array([[3.0], [-1.0]]), FAR)  # float64, as parsed
    after = batcher.submit(numbered(5), FAR)
    runner.gate.set()
    assert [r.labels.tolist() for r in await asyncio.gather(before, after)] == [[1, 2], [5]]
    with pytest.raises(InvalidRows):
        await refused
    await first
    assert runner.calls == [1, 3]  # the refused request's rows never reached the model
    await batcher.close(1.0)


async def test_rows_beyond_float32_become_infinite_for_the_screen() -> None:
    seen: list[np.ndarray] = []

    def not_finite(rows: np.ndarray) -> np.ndarray | None:
        seen.append(rows.copy())
        bad = ~np.isfinite(rows[:, 0])
        return bad if bad.any() else None

    runner = GatedRunner()
    runner.gate.set()
    batcher = make_batcher(runner, screen=not_finite)
    with pytest.raises(InvalidRows):
        await batcher.submit(np.array([[1e39], [2.0]]), FAR)
    assert seen[0].dtype == np.float32 and seen[0][:, 0].tolist() == [np.inf, 2.0]
    assert runner.calls == []
    await batcher.close(1.0)


async def test_an_expired_request_is_refused_and_never_computed() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner)
    first = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    late = batcher.submit(numbered(1), time.perf_counter())  # its deadline has passed
    on_time = batcher.submit(numbered(2), FAR)
    runner.gate.set()
    assert (await on_time).labels.tolist() == [2]
    with pytest.raises(DeadlineExceeded):
        await late
    await first
    assert runner.calls == [1, 1]
    await batcher.close(1.0)


async def test_requests_queued_past_the_queue_deadline_get_no_model_call() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner, queue_deadline_s=0.05)
    first = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    waited = [batcher.submit(numbered(n), FAR) for n in (1, 2)]
    await asyncio.sleep(0.1)  # longer than the queue deadline, behind the running batch
    fresh = batcher.submit(numbered(3), FAR)
    runner.gate.set()
    assert (await fresh).labels.tolist() == [3]
    for late in waited:
        with pytest.raises(WaitedTooLong):
            await late
    await first
    assert runner.calls == [1, 1]
    await batcher.close(1.0)


async def test_a_model_answering_the_wrong_number_of_rows_fails_the_batch() -> None:
    runner = GatedRunner(drop_one=True)
    runner.gate.set()
    batcher = make_batcher(runner)
    with pytest.raises(BatchFailed, match="model returned 2 answers for 3 rows"):
        await batcher.submit(numbered(0, 3), FAR)
    await batcher.close(1.0)


async def test_metrics_count_batches_rows_and_waiting_requests() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    runner = GatedRunner()
    batcher = make_batcher(runner, metrics)

    def sample(name: str) -> float:
        metrics.folding.flush()  # as a scrape does first
        return registry.get_sample_value(name, {"variant": "test"}) or 0.0

    first = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    queued = [batcher.submit(numbered(0, 2), FAR) for _ in range(4)]
    assert sample("perfserve_queue_depth") == 4
    runner.gate.set()
    await asyncio.gather(first, *queued)
    assert sample("perfserve_queue_depth") == 0
    assert sample("perfserve_batch_size_count") == 2
    assert sample("perfserve_batch_size_sum") == 1 + 4 * 2
    assert sample("perfserve_queue_duration_seconds_count") == 5
    assert sample("perfserve_inference_duration_seconds_count") == 2
    assert sample("perfserve_busy_seconds_total") > 0
    await batcher.close(1.0)


@pytest.mark.parametrize("inline", [False, True])
async def test_inline_batches_run_on_the_event_loop_and_others_on_the_runner_thread(
    inline: bool,
) -> None:
    runner = GatedRunner()
    runner.gate.set()
    batcher = make_batcher(runner, inline=inline)
    await batcher.submit(numbered(0), FAR)
    on_loop = runner.threads == {threading.get_ident()}
    assert on_loop == inline
    await batcher.close(1.0)


async def test_close_answers_a_batch_it_gave_up_waiting_for() -> None:
    runner = GatedRunner()
    batcher = make_batcher(runner)
    stuck = batcher.submit(numbered(0), FAR)
    await runner.wait_busy()
    queued = batcher.submit(numbered(1), FAR)
    await batcher.close(0.05)
    runner.gate.set()  # let the runner thread finish
    for future in (stuck, queued):
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(future, 5)

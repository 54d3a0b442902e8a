"""The native engine's parts, and the attribution of a step to the generator or the server.

The engine against a real server on loopback: a generator process stopped in the middle
of a step (starved of CPU as completely as it can be) is blamed for the SLO it misses,
not the server. The calibration's search and the header parsing are checked directly."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loadtests.arrivals import ArrivalProcess
from loadtests.bodies import encode_bodies, holdout_rows
from loadtests.checks import server_timing_total_s
from loadtests.engines.base import WARM_CONNECTIONS
from loadtests.engines.native import NativeEngine
from loadtests.engines.native_generator import encode_requests
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.sweep.calibration import CalibrationPoint, search_ceiling
from loadtests.sweep.steps import StepRunner, StepSettings
from perfserve_common.processes import ServerProcess
from tests.utils import eventually


def test_the_server_timing_total_is_read_in_seconds() -> None:
    assert server_timing_total_s(b"queue;dur=0.010, infer;dur=0.120, total;dur=0.250") == 0.00025
    assert server_timing_total_s(b"total;dur=12.5") == 0.0125
    assert server_timing_total_s(b"queue;dur=1") is None
    assert server_timing_total_s(b"total;dur=oops") is None


def test_requests_are_encoded_once_with_their_length_and_sticky_users() -> None:
    bodies = [b'{"instances":[[1.0]]}', b'{"instances":[[2.0]]}']
    one = encode_requests(bodies, "onnx_int8", "127.0.0.1:8000")
    assert len(one) == 2
    assert one[0].startswith(b"POST /models/onnx_int8/predict HTTP/1.1\r\n")
    assert one[0].endswith(b"content-length: 21\r\n\r\n" + bodies[0])
    split = encode_requests(bodies, "split", "127.0.0.1:8000")
    users = {r.split(b"x-user-id: ")[1].split(b"\r\n")[0] for r in split}
    assert len(split) == len(users) == 10_000
    assert all(r.startswith(b"POST /predict ") for r in split)


def test_calibration_finds_the_highest_rate_the_generator_keeps_up_with() -> None:
    def generator(rate: float) -> CalibrationPoint:
        sent = min(rate, 11_000.0)
        late = 0.0 if rate <= 10_000 else 0.2
        return CalibrationPoint(rate, sent, late, min(1.0, rate / 11_000))

    calibration = search_ceiling(generator, 2000, 128_000)
    rates = [p.rate for p in calibration.points]
    assert rates[:4] == [2000, 4000, 8000, 16_000]
    assert 9000 <= calibration.ceiling_qps <= 10_000
    assert all(p.keeps_up == (p.rate <= 10_000) for p in calibration.points)


def test_one_stall_of_the_host_does_not_cut_the_calibrated_ceiling() -> None:
    # At 4,000/s the first try meets a stall that makes 3% of its sends late; the second
    # keeps up, so the search goes on to the generator's real limit.
    tries: dict[float, int] = {}

    def generator(rate: float) -> CalibrationPoint:
        tries[rate] = tries.get(rate, 0) + 1
        stalled = rate == 4000 and tries[rate] == 1
        late = 0.03 if stalled or rate > 10_000 else 0.0
        return CalibrationPoint(rate, rate, late, min(1.0, rate / 11_000))

    calibration = search_ceiling(generator, 2000, 128_000)
    assert 9000 <= calibration.ceiling_qps <= 10_000
    assert [p.keeps_up for p in calibration.points if p.rate == 4000] == [False, True]
    assert all(tries[rate] == 2 for rate in tries if rate > 10_000)


def test_a_generator_starved_of_cpu_is_blamed_not_the_server(
    server: ServerProcess, store: Path
) -> None:
    # The generator process is stopped for 0.8 s of a 3 s step at 200/s: every arrival
    # due meanwhile goes out late in one burst, and misses a 50 ms SLO from schedule,
    # while the server, nearly idle, answers each in a millisecond.
    settings = StepSettings(
        slo_p99_ms=50.0, step_seconds=3.0, window_seconds=0.5, max_step_seconds=3.0,
        arrivals="constant",
    )  # fmt: skip
    with _onnx_int8_steps(server, store, settings) as (engine, runner):
        (generator,) = engine.processes()
        starve = threading.Timer(1.2, _stop_for, (generator.pid, 0.8))
        starve.start()
        step = runner.run(200.0, extend=False)
        starve.join()
    assert step.client.miss_ratio > 0.05
    assert step.generator_late_share > 0.1
    assert step.server.utilization < 0.5
    assert step.verdict == "generator-bound"


@pytest.mark.parametrize(
    ("rate", "arrivals"),
    [
        # At 200/s the generator is idle between arrivals: it wakes a little early and
        # spins to the scheduled moment, never sending before it.
        (200.0, "constant"),
        # Poisson gaps at 2,000/s fall under SEND_AHEAD_S one time in six: such arrivals
        # leave with the one before them, a little early, and are timed from the send.
        (2_000.0, "poisson"),
    ],
)
def test_latency_from_the_schedule_is_never_shorter_than_from_the_send(
    server: ServerProcess, store: Path, rate: float, arrivals: ArrivalProcess
) -> None:
    settings = StepSettings(
        step_seconds=2.0, window_seconds=0.5, max_step_seconds=2.0, arrivals=arrivals
    )
    with _onnx_int8_steps(server, store, settings) as (_, runner):
        step = runner.run(rate, extend=False)
    client = step.client
    # Within 10%: on a busy machine, sends that fell behind in the warm-up catch up in
    # the measured windows.
    assert client.sent_qps == pytest.approx(rate, rel=0.10)
    assert client.p50_ms >= client.sent_p50_ms
    assert client.p99_ms >= client.sent_p99_ms


@contextmanager
def _onnx_int8_steps(
    server: ServerProcess, store: Path, settings: StepSettings
) -> Iterator[tuple[NativeEngine, StepRunner]]:
    """A native engine of one generator process, set up to load onnx_int8, and the
    runner of its steps."""
    engine = NativeEngine(server.url, 1, 64, LoadgenMetrics())
    try:
        engine.setup(encode_bodies(holdout_rows(store), 1), 1, "onnx_int8")
        yield engine, StepRunner(engine, server.url, "onnx_int8", ["onnx_int8"], settings, print)
    finally:
        engine.close()


def _stop_for(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the behaviour under test: a generator that gets no CPU
    finally:
        os.kill(pid, signal.SIGCONT)


def test_warming_opens_the_connections_before_the_first_arrival(
    server: ServerProcess, store: Path
) -> None:
    settings = StepSettings(step_seconds=1.0, window_seconds=0.5)
    with _onnx_int8_steps(server, store, settings) as (engine, _):
        (generator,) = engine.processes()
        port = int(server.url.rsplit(":", 1)[1])

        def open_to_server() -> int:
            connections = generator.net_connections(kind="tcp")
            return sum(1 for c in connections if c.raddr and c.raddr.port == port)

        assert open_to_server() == 0
        engine.warm()
        eventually(lambda: open_to_server() >= WARM_CONNECTIONS)
        assert open_to_server() == WARM_CONNECTIONS  # all of them, with no request sent
        engine.warm()  # already open: nothing more
        # Nothing marks that no connection was opened: give a wrong one time to show.
        time.sleep(0.2)
        assert open_to_server() == WARM_CONNECTIONS


def test_only_the_thread_that_reads_flushes_runs_at_the_lowest_priority(
    server: ServerProcess, store: Path
) -> None:
    """A generator's flush answer wakes the thread that reads it, often on the
    generator's own core: at nice 19 that thread waits for the generator instead of
    taking the core from it. The controller's other threads and the processes it starts
    keep their priority."""
    settings = StepSettings(step_seconds=1.0, window_seconds=0.5, max_step_seconds=1.0)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    with _onnx_int8_steps(server, store, settings) as (engine, runner):
        step = runner.run(200.0, extend=False)
        (generator,) = engine.processes()
        flusher = [t for t in threading.enumerate() if t.name.startswith("flusher")]
        assert [os.getpriority(os.PRIO_PROCESS, t.native_id or 0) for t in flusher] == [19]
        assert os.getpriority(os.PRIO_PROCESS, 0) == ours
        assert generator.nice() == ours
    assert step.client.answers > 0

"""The generator's own ceiling, measured against the bare HTTP floor before a sweep.

A knee is only the server's if the generator could have offered more. `perfserve sweep
--calibrate` starts the bare ASGI app (perfserve_common/bare_asgi.py: the same uvicorn stack
with no framework and no model, so far cheaper per request than any variant) and
raises the generator's rate against it until the generator falls behind: sends short
of the target, or more than 1% of them late by its own doing (not for want of a free
connection). The highest rate it kept up with is its ceiling; the sweep then labels a
step above a share of it that misses generator-bound, not the server's failure. The
ceiling is also bounded by the bare server, so it is a lower bound of the generator's.

A rate the generator falls behind at is measured once more before it counts as beyond
the ceiling. On a shared virtual machine one stall of the host (tens of milliseconds
seen) makes a 2 s step's sends more than 1% late at any rate, while the same generator
keeps up with eight times that rate a moment later; a ceiling cut there would charge
the generator with every miss above it. A generator that is really out of breath falls
behind on both tries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from loadtests.engines.base import Engine
from loadtests.sweep.knee import climb
from loadtests.sweep.results import own_late_share
from perfserve_common.processes import running_bare_server

OWN_LATE_LIMIT = 0.01
"""More of the sends late than this (beyond the tolerance) and the generator is behind."""
SHORTFALL = 0.05
START_QPS, MAX_QPS = 2000.0, 128_000.0
STEP_S, WINDOW_S = 2.0, 0.5
PRECISION = 0.1
MAX_POINTS = 12
DRAIN_S = 10.0


@dataclass(frozen=True)
class CalibrationPoint:
    rate: float
    sent_qps: float
    own_late_share: float
    generator_cpu: float

    @property
    def keeps_up(self) -> bool:
        return (
            self.sent_qps >= (1 - SHORTFALL) * self.rate and self.own_late_share <= OWN_LATE_LIMIT
        )


@dataclass(frozen=True)
class Calibration:
    ceiling_qps: float
    """The highest rate offered on time against the bare server (0 if none was)."""
    points: list[CalibrationPoint]


def calibrate(
    make_engine: Callable[[str], Engine],
    bodies: list[bytes],
    bare_cpus: str | None = None,
    start_qps: float = START_QPS,
    max_qps: float = MAX_QPS,
) -> Calibration:
    """Doubling from `start_qps` until the generator falls behind, then bisection.
    `make_engine(url)` starts the generators the sweep will use, aimed at `url`."""
    with running_bare_server(bare_cpus) as url:
        engine = make_engine(url)
        try:
            engine.setup(bodies, 1, "bare")
            return search_ceiling(lambda rate: measure(engine, rate), start_qps, max_qps)
        finally:
            engine.close()


def search_ceiling(
    measure_at: Callable[[float], CalibrationPoint], start_qps: float, max_qps: float
) -> Calibration:
    """`measure_at` a rate, and again where the generator fell behind (see the module
    docstring): the second try decides, and both are among the points."""
    points: list[CalibrationPoint] = []

    def measure_twice(rate: float) -> CalibrationPoint:
        points.append(point := measure_at(rate))
        if not point.keeps_up:
            points.append(point := measure_at(rate))
        return point

    held, _ = climb(measure_twice, lambda p: p.keeps_up, start_qps, max_qps, PRECISION, MAX_POINTS)
    return Calibration(held, points)


def measure(engine: Engine, rate: float) -> CalibrationPoint:
    """One constant-rate step: sends, own lateness and the busiest generator's CPU."""
    step = engine.new_step()
    processes = engine.processes()
    cpu_before = [sum(p.cpu_times()[:2]) for p in processes]
    start = engine.start_step(step, rate, "constant", WINDOW_S)
    time.sleep(max(0.0, start + STEP_S - time.time()))
    engine.stop_arrivals(step)
    elapsed = time.time() - start
    engine.drain(DRAIN_S)
    cpu = [sum(p.cpu_times()[:2]) - b for p, b in zip(processes, cpu_before, strict=True)]
    windows = int(STEP_S / WINDOW_S)
    measured = [engine.collected.window((step, i)) for i in range(1, windows)]
    engine.collected.discard(step)
    sent = sum(w.sent for w in measured) / ((windows - 1) * WINDOW_S)
    return CalibrationPoint(rate, sent, own_late_share(measured), max(cpu) / elapsed)

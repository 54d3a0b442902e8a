"""The engine interface: what the sweep needs from a load generator, whichever it is.

A step (loadtests/sweep/steps.py) offers a rate through `start_step`, reads the windows
the generators recorded from `collected` after each `flush`, stops the arrivals, waits
for the answers with `drain`, and reads the generators' CPU use from `processes`. The
native engine (loadtests/engines/native.py) and the Locust engine
(loadtests/engines/locust_engine.py) both subclass it, so steps, stability, the knee,
the server's side, theory and the report are one code path.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import psutil

from loadtests.arrivals import ArrivalProcess
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.recorder import Recorder
from perfserve_common.protocols import ProtocolName

EngineName = Literal["native", "locust"]
ENGINES: tuple[EngineName, ...] = ("native", "locust")
START_DELAY_S = 0.2
"""A plan starts this long after it is sent, so every generator starts its clock together."""
WARM_CONNECTIONS = 64
"""Connections a step opens before its first arrival, across its generators: as many as
an independent open-loop client opens up front (wrk's and openloop's 64)."""
DRAIN_POLL_S = 0.05
"""How often `drain` looks again for answers still in flight."""


@dataclass(frozen=True)
class Plan:
    """What every generator offers during one step."""

    step: int
    rate: float
    process: ArrivalProcess
    start_wall: float
    """`time.time()` at which the step's window 0 starts, the same for every process."""
    window_s: float
    generators: int
    seed: int


@dataclass(frozen=True)
class Setup:
    """The request bodies and the target every generator sends to from now on. It
    travels as a dict (`asdict` in the controller, `Setup(**data)` in the generator)
    because Locust's messages carry plain data only."""

    bodies: list[bytes]
    rows_per_request: int
    target: str
    protocol: ProtocolName = "perfserve"


class Engine(ABC):
    """A load generator the sweep drives: one or more processes sending open-loop.

    What does not depend on how the generators are reached lives here: step ids, the
    setup and plans handed to every generator, and waiting for answers. Each engine
    says how a setup and a plan reach its generators and how many requests are in
    flight."""

    def __init__(self, generators: int, metrics: LoadgenMetrics) -> None:
        self.generators = generators
        """How many processes generate (each offers `rate / generators`)."""
        self.metrics = metrics
        self._steps = 0

    @property
    @abstractmethod
    def collected(self) -> Recorder:
        """Every window handed over so far, merged across generators (histograms added)."""

    def new_step(self) -> int:
        """A step id unique for this engine: windows are keyed by it."""
        self._steps += 1
        return self._steps

    def setup(
        self,
        bodies: list[bytes],
        rows_per_request: int,
        target: str,
        protocol: ProtocolName = "perfserve",
    ) -> None:
        """The request bodies and the target (a variant, or the live split) from now on,
        posted to the target's path in `protocol`."""
        self._send_setup(Setup(bodies, rows_per_request, target, protocol))

    @abstractmethod
    def warm(self) -> None:
        """Open `WARM_CONNECTIONS` keep-alive connections (at most the pool's size) before
        the next step's first arrival, so the server accepts them before it is measured."""

    def start_step(self, step: int, rate: float, process: ArrivalProcess, window_s: float) -> float:
        """Offer `rate` from a moment just ahead; returns that start (`time.time()`)."""
        start = time.time() + START_DELAY_S
        self._send_plan(Plan(step, rate, process, start, window_s, self.generators, seed=step))
        self.metrics.target_rps.set(rate)
        return start

    @abstractmethod
    def stop_arrivals(self, step: int) -> None:
        """No more sends; arrivals of the step still waiting for a connection are dropped."""

    @abstractmethod
    def flush(self) -> None:
        """Bring every generator's new windows into `collected`."""

    def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight anywhere; False if some still were at timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.flush()
            if self._in_flight() == 0:
                return True
            if time.monotonic() > deadline:
                return False
            self._pause(DRAIN_POLL_S)

    @abstractmethod
    def processes(self) -> list[psutil.Process]:
        """The processes that generate load (for their CPU use)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _send_setup(self, setup: Setup) -> None:
        """Hand `setup` to every generator."""

    @abstractmethod
    def _send_plan(self, plan: Plan) -> None:
        """Hand `plan` to every generator (each takes its share of the rate)."""

    @abstractmethod
    def _in_flight(self) -> int:
        """Requests sent and not yet answered, across generators, as of the last flush."""

    @abstractmethod
    def _pause(self, seconds: float) -> None:
        """Wait without blocking what the generators' answers need to run."""

"""The engine interface: what the sweep needs from a load generator, whichever it is.

A step (loadtests/sweep/steps.py) offers a rate through `start_step`, reads the windows
the generators recorded from `collected` after each `flush`, stops the arrivals, waits
for the answers with `drain`, and reads the generators' CPU use from `processes`. The
native engine (loadtests/engines/native.py) and the Locust engine
(loadtests/engines/locust_engine.py) both implement it, so steps, stability, the knee,
the server's side, theory and the report are one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import psutil

from loadtests.arrivals import ArrivalProcess
from loadtests.recorder import Recorder
from perfserve_common.protocols import ProtocolName

EngineName = Literal["native", "locust"]
ENGINES: tuple[EngineName, ...] = ("native", "locust")
START_DELAY_S = 0.2
"""A plan starts this long after it is sent, so every generator starts its clock together."""
WARM_CONNECTIONS = 64
"""Connections a step opens before its first arrival, across its generators: as many as
an independent open-loop client opens up front (wrk's and openloop's 64)."""


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


class Engine(Protocol):
    """A load generator the sweep drives: one or more processes sending open-loop."""

    generators: int
    """How many processes generate (each offers `rate / generators`)."""

    @property
    def collected(self) -> Recorder:
        """Every window handed over so far, merged across generators (histograms added)."""
        ...

    def new_step(self) -> int:
        """A step id unique for this engine: windows are keyed by it."""
        ...

    def setup(
        self,
        bodies: list[bytes],
        rows_per_request: int,
        target: str,
        protocol: ProtocolName = "perfserve",
    ) -> None:
        """The request bodies and the target (a variant, or the live split) from now on,
        posted to the target's path in `protocol`."""
        ...

    def warm(self) -> None:
        """Open `WARM_CONNECTIONS` keep-alive connections (at most the pool's size) before
        the next step's first arrival, so the server accepts them before it is measured."""
        ...

    def start_step(self, step: int, rate: float, process: ArrivalProcess, window_s: float) -> float:
        """Offer `rate` from a moment just ahead; returns that start (`time.time()`)."""
        ...

    def stop_arrivals(self, step: int) -> None:
        """No more sends; arrivals of the step still waiting for a connection are dropped."""
        ...

    def flush(self) -> None:
        """Bring every generator's new windows into `collected`."""
        ...

    def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight anywhere; False if some still were at timeout."""
        ...

    def processes(self) -> list[psutil.Process]:
        """The processes that generate load (for their CPU use)."""
        ...

    def close(self) -> None: ...

"""The native engine: open-loop generator processes on uvloop + httptools, one per core.

Locust's generator costs hundreds of microseconds of CPU per request and adds
milliseconds of its own to what it measures, so against a fast variant it runs out of
breath before the server does. Here each generator process
(loadtests/engines/native_generator.py) sends requests encoded once over raw asyncio
protocols and keep-alive connections, on a timer precise to tens of microseconds. This
controller, in the sweep's process, sends every generator its share of each step's
plan over a socket pair, and on each flush merges the windows they recorded (the
HdrHistograms added, so merged percentiles are exact, not averages of percentiles).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

import psutil

from loadtests.engines.base import WARM_CONNECTIONS, Engine, Plan, Setup
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.recorder import Recorder, windows_from_wire
from perfserve_common.processes import wait_or_kill

READY_TIMEOUT_S = 30.0


class NativeEngine(Engine):
    """Implements `Engine` with `generators` native processes,
    pinned to `cpus` (in turn) when given."""

    def __init__(
        self,
        url: str,
        generators: int,
        max_in_flight: int,
        metrics: LoadgenMetrics,
        cpus: list[int] | None = None,
    ) -> None:
        super().__init__(generators, metrics)
        self._collected = Recorder()
        self._flushes = 0
        self._in_flight_by_generator = [0] * generators
        self._links: list[Connection] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._flusher = ThreadPoolExecutor(1, "flusher", initializer=_lowest_priority)
        for index in range(generators):
            cpu = [str(cpus[index % len(cpus)])] if cpus else []
            self._start(url, max_in_flight, cpu)
        for index, link in enumerate(self._links):
            if not link.poll(READY_TIMEOUT_S):
                self.close()
                raise RuntimeError(f"native generator {index} not ready in {READY_TIMEOUT_S} s")
            link.recv()

    @property
    def collected(self) -> Recorder:
        return self._collected

    def warm(self) -> None:
        each = -(-WARM_CONNECTIONS // self.generators)
        for link in self._links:
            link.send(("warm", each))

    def stop_arrivals(self, step: int) -> None:
        for link in self._links:
            link.send(("stop", step))
        self.metrics.target_rps.set(0)

    def flush(self) -> None:
        """Ask every generator for its new windows, then read each one's answer.

        On the flusher thread, at the lowest priority: a generator's answer wakes the
        thread that reads it, and the scheduler tends to run that thread on the
        generator's own core. At normal priority it took the core at once, and the
        generator's sends waited out its reading and merging, up to 5 ms at a time."""
        self._flusher.submit(self._flush).result()

    def _flush(self) -> None:
        self._flushes += 1
        for link in self._links:
            link.send(("flush", self._flushes))
        for index, link in enumerate(self._links):
            if not link.poll(READY_TIMEOUT_S):
                raise TimeoutError(f"generator {index} did not answer a flush")
            kind, flush_id, wire, in_flight = link.recv()
            assert kind == "windows" and flush_id == self._flushes
            windows = windows_from_wire(wire)
            self._collected.merge(windows)
            self.metrics.observe(windows)
            self._in_flight_by_generator[index] = in_flight

    def _send_setup(self, setup: Setup) -> None:
        for link in self._links:
            link.send(("setup", asdict(setup)))

    def _send_plan(self, plan: Plan) -> None:
        for index, link in enumerate(self._links):
            link.send(("plan", {"plan": asdict(plan), "index": index}))

    def _in_flight(self) -> int:
        return sum(self._in_flight_by_generator)

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self._processes if p.poll() is None]

    def close(self) -> None:
        self._flusher.shutdown()
        for link in self._links:
            with contextlib.suppress(OSError):
                link.send(("quit", None))
        for process in self._processes:
            wait_or_kill(process, 10)
        for link in self._links:
            link.close()

    def _start(self, url: str, max_in_flight: int, cpu: list[str]) -> None:
        ours, theirs = socket.socketpair()
        command: list[Any] = [
            sys.executable, "-m", "loadtests.engines.native_generator",
            str(theirs.fileno()), url, str(max_in_flight), *cpu,
        ]  # fmt: skip
        self._processes.append(subprocess.Popen(command, pass_fds=[theirs.fileno()]))
        theirs.close()
        self._links.append(Connection(ours.detach()))


def _lowest_priority() -> None:
    """Nice 19 for the calling thread alone (Linux keeps a nice value per thread), so
    that neither the controller's other threads nor the processes it starts inherit it."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)

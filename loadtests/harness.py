"""Moves measurements from where requests run to where they are judged, on Locust.

Requests are recorded where they run: in the one process of a local run, or in each
worker of a distributed one. Every second (and whenever the controller asks, with a
flush) each generator hands its new windows over; workers send them to the master as a
Locust custom message. On the master, or in a local run, they are merged into one
`Recorder` and fed to the load generator's Prometheus metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.recorder import Recorder, windows_from_wire, windows_to_wire

RECORD, FLUSH = "perfserve_record", "perfserve_flush"
HANDOVER_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


class Harness:
    """One per Locust process. `recorder` is where this process records; `collected`
    (master or local run only) is everything merged so far."""

    def __init__(self, environment: Environment, metrics: LoadgenMetrics | None) -> None:
        self.environment = environment
        self.metrics = metrics
        self.recorder = Recorder()
        self.collected = Recorder()
        self.in_flight = 0
        self._flushes: dict[int, int] = {}
        self._next_flush = 0
        self._in_flight_by_source: dict[str, int] = {}
        runner = environment.runner
        assert runner is not None, "create the runner before the harness"
        self._handover: gevent.Greenlet | None = None
        if not isinstance(runner, WorkerRunner):
            runner.register_message(RECORD, self._on_record)
        if not isinstance(runner, MasterRunner):
            runner.register_message(FLUSH, self._on_flush)
            self._handover = gevent.spawn(self._hand_over_forever)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment.runner, WorkerRunner)

    @property
    def generators(self) -> int:
        runner = self.environment.runner
        return runner.worker_count if isinstance(runner, MasterRunner) else 1

    def total_in_flight(self) -> int:
        """Requests in flight in every generator, as of their last hand-over."""
        return sum(self._in_flight_by_source.values())

    def flush(self, timeout_s: float = 10.0) -> None:
        """Ask every generator for what it recorded and wait until all have answered."""
        self._next_flush += 1
        flush_id = self._next_flush
        self._flushes[flush_id] = 0
        runner = self.environment.runner
        assert runner is not None
        runner.send_message(FLUSH, {"id": flush_id})
        deadline = time.monotonic() + timeout_s
        while self._flushes[flush_id] < self.generators:
            if time.monotonic() > deadline:
                raise TimeoutError(f"generators did not answer flush {flush_id} in {timeout_s} s")
            gevent.sleep(0.005)
        del self._flushes[flush_id]

    def stop(self) -> None:
        if self._handover is not None:
            self._handover.kill(block=False)

    def hand_over(self) -> None:
        """Hand over what this generator recorded so far (no-op on a master)."""
        if not isinstance(self.environment.runner, MasterRunner):
            self._hand_over(None)

    def _hand_over_forever(self) -> None:
        while True:
            gevent.sleep(HANDOVER_INTERVAL_S)
            self._hand_over(None)

    def _hand_over(self, flush_id: int | None) -> None:
        windows = self.recorder.take()
        runner = self.environment.runner
        assert runner is not None
        payload = {
            "windows": windows_to_wire(windows) if self.is_worker else windows,
            "in_flight": self.in_flight,
            "flush": flush_id,
        }
        runner.send_message(RECORD, payload)

    def _on_flush(self, environment: Environment, msg: Message, **_: Any) -> None:
        self._hand_over(msg.data["id"])

    def _on_record(self, environment: Environment, msg: Message, **_: Any) -> None:
        data = msg.data
        windows = data["windows"]
        if isinstance(windows, list):
            windows = windows_from_wire(windows)
        self.collected.merge(windows)
        if self.metrics is not None:
            self.metrics.observe(windows)
        self._in_flight_by_source[str(msg.node_id)] = int(data["in_flight"])
        flush_id = data.get("flush")
        if flush_id in self._flushes:
            self._flushes[flush_id] += 1

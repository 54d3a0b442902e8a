"""The sweep's handle on Locust: start the generators, set the rate, collect windows.

In-process by default (a Locust `LocalRunner`: the dispatcher runs in this process).
With `workers > 0`, this process is a Locust master that generates nothing itself and
`workers` `locust --worker` processes do the sending, each one dispatcher at
`rate / workers`: the way past one generator core's limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gevent
import locust
import psutil
from locust.env import Environment

from loadtests.engines import locust_openloop as openloop
from loadtests.engines.base import Engine, Plan, Setup
from loadtests.engines.locust_openloop import PLAN, SETUP, OpenLoopUser, plan_message
from loadtests.harness import Harness
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.recorder import Recorder
from perfserve_common.processes import free_port, wait_or_kill


class Driver(Engine):
    """Implements `Engine` on Locust."""

    def __init__(self, url: str, workers: int, max_in_flight: int, metrics: LoadgenMetrics) -> None:
        # Imports and loading may have taken seconds since gevent's loop last ran; its
        # cached clock would make the first timers fire that much too early.
        gevent.get_hub().loop.update_now()
        super().__init__(max(1, workers), metrics)
        self.workers = workers
        OpenLoopUser.concurrency = max_in_flight
        self.environment = Environment(user_classes=[OpenLoopUser], events=locust.events, host=url)
        self._processes: list[subprocess.Popen[bytes]] = []
        if workers:
            port = free_port()
            self.environment.create_master_runner("127.0.0.1", port)
            self.harness = Harness(self.environment, metrics)
            self._start_workers(port, max_in_flight)
        else:
            self.environment.create_local_runner()
            self.harness = Harness(self.environment, metrics)
            openloop.install(self.environment, self.harness)
        self._start_users()

    @property
    def collected(self) -> Recorder:
        return self.harness.collected

    def flush(self) -> None:
        self.harness.flush()

    def warm(self) -> None:
        """Locust's users hold their own connections, opened when their first task runs:
        nothing to open ahead (its warm-up windows still come first)."""

    def stop_arrivals(self, step: int) -> None:
        self._send(PLAN, plan_message(Plan(step, 0.0, "constant", time.time(), 1.0, 1, 0)))
        self.metrics.target_rps.set(0)

    def processes(self) -> list[psutil.Process]:
        if not self._processes:
            return [psutil.Process()]
        return [psutil.Process(p.pid) for p in self._processes if p.poll() is None]

    def close(self) -> None:
        runner = self.environment.runner
        self.harness.stop()
        if runner is not None:
            runner.quit()
        for process in self._processes:
            wait_or_kill(process, 10)

    def _send_setup(self, setup: Setup) -> None:
        self._send(SETUP, asdict(setup))

    def _send_plan(self, plan: Plan) -> None:
        self._send(PLAN, plan_message(plan))

    def _in_flight(self) -> int:
        return self.harness.total_in_flight()

    def _pause(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def _send(self, kind: str, data: dict[str, object]) -> None:
        runner = self.environment.runner
        assert runner is not None
        runner.send_message(kind, data)

    def _start_workers(self, port: int, max_in_flight: int) -> None:
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(Path(openloop.__file__)),
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
            "--loglevel",
            "WARNING",
        ]
        env = {**os.environ, "PERFSERVE_MAX_IN_FLIGHT": str(max_in_flight)}
        for _ in range(self.workers):
            self._processes.append(subprocess.Popen(command, env=env))

    def _start_users(self, timeout_s: float = 60.0) -> None:
        """One dispatcher per generator, once every worker is connected (workers take
        seconds to import Locust)."""
        runner = self.environment.runner
        assert runner is not None
        deadline = time.monotonic() + timeout_s
        while self.workers and getattr(runner, "worker_count", 0) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.workers} Locust workers not connected after {timeout_s} s"
                )
            gevent.sleep(0.1)
        runner.start(self.generators, spawn_rate=self.generators)
        while runner.user_count < self.generators:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Locust generators not running after {timeout_s} s")
            gevent.sleep(0.1)

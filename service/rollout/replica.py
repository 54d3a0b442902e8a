"""One worker process's part in rollouts: record evidence, publish it, follow the state.

Every worker of every replica runs `tick()` every `TICK_S` (supervised, see
service/supervision.py): it reads the shared state, records the
baseline's and the candidate's requests only while a rollout runs, publishes them with
the split version it serves, and mirrors the state into the rollout gauges, so any
replica's `/metrics` shows the step and the weight. The worker that accepts
`POST /rollout/start` also runs the controller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from service.metrics import Metrics
from service.rollout.controller import ApplySplit, Controller
from service.rollout.plan import RolloutPlan, RolloutState, Status
from service.rollout.samples import STALE_S, SampleRecorder, publish, replica_id
from service.rollout.shared import Command, RolloutFolder, SentCommand

STATUSES: tuple[Status, ...] = (
    "running",
    "paused",
    "promoted",
    "rolled_back",
    "aborted",
    "dry_run_done",
)


class RolloutConflict(Exception):
    """A rollout is already under way (start), or none is (commands)."""


class RolloutReplica:
    def __init__(
        self,
        folder: Path,
        metrics: Metrics,
        capacity: int,
        apply: ApplySplit,
        split_version: Callable[[], int],
    ) -> None:
        self.folder = RolloutFolder(folder)
        self.metrics = metrics
        self.recorder = SampleRecorder(capacity)
        self.replica = replica_id()
        self._apply = apply
        self._split_version = split_version
        self._controller: asyncio.Task[None] | None = None

    def status(self) -> RolloutState | None:
        return self.folder.read_state()

    def start(self, plan: RolloutPlan) -> RolloutState:
        """Run the controller here; refused while another rollout's controller is alive."""
        if self._alive(current := self.folder.read_state()):
            assert current is not None
            raise RolloutConflict(
                f"a rollout of {current.plan.candidate} is {current.status}; "
                "abort or promote it first"
            )
        controller = Controller(self.folder, plan, self._apply, self.metrics.rollout_verdicts)
        controller.state.command_seen = time.time_ns()  # commands sent before now are stale
        controller.state.heartbeat = time.time()
        self.folder.write_state(controller.state)
        self._controller = asyncio.get_running_loop().create_task(
            controller.run(), name="rollout-controller"
        )
        return controller.state

    def send(self, command: Command) -> SentCommand:
        """Pass a command to the controller, whichever replica runs it."""
        if not self._alive(self.folder.read_state()):
            raise RolloutConflict("no rollout is running or paused")
        return self.folder.send(command)

    async def tick(self) -> None:
        """Follow the shared state once; publish this worker's samples while it runs."""
        state = self.folder.read_state()
        if state is None or state.finished:
            self.recorder.stop()
        else:
            since = state.window_start if state.phase == "collecting" else time.time()
            self.recorder.follow(state.plan.baseline, state.plan.candidate, since)
            snapshot = self.recorder.snapshot(self.replica, self._split_version())
            await asyncio.to_thread(publish, self.folder.samples, snapshot)
        self._publish_gauges(state)

    async def stop(self) -> None:
        if self._controller is not None:
            self._controller.cancel()
            with suppress(asyncio.CancelledError):
                await self._controller
        (self.folder.samples / f"{self.replica}.json").unlink(missing_ok=True)

    def _alive(self, state: RolloutState | None) -> bool:
        """Unfinished, and its controller wrote the state recently."""
        return state is not None and not state.finished and time.time() - state.heartbeat < STALE_S

    def _publish_gauges(self, state: RolloutState | None) -> None:
        metrics = self.metrics
        metrics.rollout_step.set(state.step if state else 0)
        metrics.rollout_candidate_weight.set(state.candidate_weight if state else 0.0)
        for status in STATUSES:
            current = state is not None and state.status == status
            metrics.rollout_status.labels(status).set(int(current))

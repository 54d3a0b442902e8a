"""One worker process's part in rollouts: record evidence, publish it, follow the state.

Every worker of every replica runs `tick()` every `TICK_S` (supervised, see
service/supervision.py): it reads the shared state, records the baseline's and the
candidate's requests only while a rollout runs, appends the new ones to its journal with
the split version it serves (service/rollout/journal.py), and mirrors the state into the
rollout gauges, so any replica's `/metrics` shows the step, the weight and whether the
controller is alive. The worker that accepts
`POST /rollout/start` also runs the controller.

A controller dies with its process (a rolling deploy's SIGTERM, a crash). Its rollout is
then taken over by another worker: at once when the owner handed it on as it stopped,
after `takeover_s` without a heartbeat otherwise, and at once by whichever replica is
sent a command for it. Exactly one worker wins each takeover (`RolloutFolder.claim`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from pydantic import ValidationError

from service.metrics import Metrics
from service.rollout.controller import ApplySplit, Controller
from service.rollout.journal import Journal
from service.rollout.plan import CONTROLLER_STALE_S, RolloutPlan, RolloutState, Status
from service.rollout.samples import SampleRecorder, replica_id
from service.rollout.shared import Command, RolloutFolder, SentCommand

log = logging.getLogger("perfserve.rollout")

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


class SplitUnavailable(Exception):
    """The split cannot be set now (its file unreadable or unwritable)."""


class RolloutReplica:
    def __init__(
        self,
        folder: Path,
        metrics: Metrics,
        capacity: int,
        per_user: int,
        apply: ApplySplit,
        split_version: Callable[[], int],
        takeover_s: float = CONTROLLER_STALE_S,
    ) -> None:
        self.folder = RolloutFolder(folder)
        self.metrics = metrics
        self.recorder = SampleRecorder(capacity, per_user)
        self.replica = replica_id()
        self.journal = Journal(self.folder.samples, self.replica, capacity)
        self.takeover_s = takeover_s
        """Silence after which `follow` takes a rollout over (0: only a command does)."""
        self.guarded: str | None = None
        """The candidate clients may not name without the admin token (service/forcing.py):
        that of a rollout that is unfinished, rolled back or aborted."""
        self._apply = apply
        self._split_version = split_version
        self._controller: Controller | None = None
        self._task: asyncio.Task[None] | None = None

    def status(self) -> RolloutState | None:
        return self.folder.read_state()

    def start(self, plan: RolloutPlan) -> RolloutState:
        """Run the controller here; refused while another rollout's controller is alive.
        A stale rollout is replaced: its controller, should it wake, finds it gone."""
        current = self.folder.read_state()
        if current is not None and current.controller() == "alive":
            raise RolloutConflict(
                f"a rollout of {current.plan.candidate} is {current.status}; "
                "abort or promote it first"
            )
        controller = self._controller_for(plan, None)
        controller.state.command_seen = self.folder.prune()  # earlier ones are stale
        self._run(controller)
        self.guarded = plan.candidate
        return controller.state

    def send(self, command: Command) -> SentCommand:
        """Pass a command to the controller, whichever replica runs it; a rollout whose
        controller is stale is taken over here first, so the command is acted on."""
        state = self.folder.read_state()
        if state is None or state.finished:
            raise RolloutConflict("no rollout is running or paused")
        if state.controller() == "stale":
            self._take_over(state)
        return self.folder.send(command, state.id)

    async def tick(self) -> None:
        """Follow the shared state once: publish this worker's samples while it runs, and
        take over a rollout its controller abandoned."""
        state = self.folder.read_state()
        if state is not None and self._abandoned(state):
            self._take_over(state)
        if state is None or state.finished:
            self.recorder.stop()
            if self.journal.written:
                await asyncio.to_thread(self.journal.clear)
        else:
            since = state.window_start if state.phase == "collecting" else time.time()
            self.recorder.follow(state.plan.baseline, state.plan.candidate, since)
            requests, comparisons = self.recorder.take()
            await asyncio.to_thread(
                self.journal.publish, self._split_version(), requests, comparisons
            )
        self.guarded = guarded_candidate(state)
        self._publish_gauges(state)

    async def stop(self) -> None:
        """Stop the controller running here, handing its rollout on to another replica."""
        if self._task is not None and self._controller is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._controller.release()
        self.journal.clear()

    def _abandoned(self, state: RolloutState) -> bool:
        """Unfinished, not run here, and handed on or silent for `takeover_s`."""
        if state.finished or self.takeover_s <= 0 or self._owns(state):
            return False
        return state.released or state.heartbeat_age() >= self.takeover_s

    def _owns(self, state: RolloutState) -> bool:
        running = self._task is not None and not self._task.done()
        return running and self._controller is not None and self._controller.state.id == state.id

    def _take_over(self, state: RolloutState) -> None:
        """Run `state`'s rollout here if this worker wins the claim on it; a replica that
        loses leaves it to the winner, which acts on every command sent."""
        generation = self._claim(state)
        if generation is None:
            return
        state.generation = generation
        try:
            controller = self._controller_for(state.plan, state)
        except SplitUnavailable as error:
            log.error("cannot take over rollout %s: %s", state.id, error)
            return
        self._run(controller)

    def _claim(self, state: RolloutState) -> int | None:
        """The generation this worker now owns, or None if another worker claimed it.
        A claim that stayed unused past the stale time (its claimant died) is skipped."""
        generation = state.generation + 1
        while not self.folder.claim(state.id, generation):
            if self.folder.claim_age(state.id, generation) < CONTROLLER_STALE_S:
                return None
            generation += 1
        return generation

    def _controller_for(self, plan: RolloutPlan, adopt: RolloutState | None) -> Controller:
        verdicts = self.metrics.rollout_verdicts
        try:
            return Controller(self.folder, plan, self._apply, verdicts, adopt)
        except ValidationError as error:  # the split file holds something unreadable
            problem = error.errors(include_url=False)[0]
            raise SplitUnavailable(
                f"the split file cannot be read ({problem['msg']}); PUT /traffic first"
            ) from None
        except OSError as error:
            raise SplitUnavailable(f"the split file cannot be written: {error}") from None

    def _run(self, controller: Controller) -> None:
        controller.state.heartbeat = time.time()
        self.folder.write_state(controller.state)
        self._controller = controller
        self._task = asyncio.get_running_loop().create_task(
            controller.run(), name="rollout-controller"
        )

    def _publish_gauges(self, state: RolloutState | None) -> None:
        metrics = self.metrics
        metrics.rollout_step.set(state.step if state else 0)
        metrics.rollout_candidate_weight.set(state.candidate_weight if state else 0.0)
        for status in STATUSES:
            current = state is not None and state.status == status
            metrics.rollout_status.labels(status).set(int(current))
        unfinished = state if state is not None and not state.finished else None
        metrics.rollout_controller_stale.set(
            int(unfinished is not None and unfinished.controller() == "stale")
        )
        metrics.rollout_heartbeat_age.set(unfinished.heartbeat_age() if unfinished else 0.0)


def guarded_candidate(state: RolloutState | None) -> str | None:
    """The candidate a client may not name: while its rollout is unfinished, and after a
    rollback or abort took it away (until the next rollout or a promotion)."""
    if state is None or state.status in ("promoted", "dry_run_done"):
        return None
    return state.plan.candidate

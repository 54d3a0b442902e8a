"""The rollout's state machine: set a step's split, wait for every replica to follow it,
collect until every gate has its samples, judge, then advance, roll back, extend or pause.

It runs as one task in the replica process that accepted `POST /rollout/start` and ticks
every `TICK_S`: each tick takes the commands sent since the last one from the shared
folder (in order; an abort among them wins), moves the state on if it can, and writes the
state back with a heartbeat, which is how every other replica answers status and how a
lost controller is noticed. A replica may take a silent controller's rollout over
(`adopt`): it raises the state's generation, and the old controller, should it wake up,
finds the higher generation in the folder and stops. Reading the evidence and judging
run on a thread, so the replica keeps serving while they compute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from prometheus_client import Counter

from service.rollout.journal import STALE_S, Evidence, EvidenceReader
from service.rollout.judge import combine, judge, required_samples
from service.rollout.plan import Decision, GateRecord, RolloutPlan, RolloutState
from service.rollout.samples import replica_id
from service.rollout.shared import Command, RolloutFolder, SentCommand
from service.routing import TrafficSplit

log = logging.getLogger("perfserve.rollout")
log.setLevel(logging.INFO)  # every decision is logged, whatever the service's log level

TICK_S = 0.2
ApplySplit = Callable[[TrafficSplit], int]
"""Sets the split on every replica (through the shared file) and returns its version."""


def step_split(plan: RolloutPlan, percent: float) -> TrafficSplit:
    """Baseline and candidate at `percent` for the candidate; while the baseline still
    serves, the candidate also shadows it, so predictions are compared on the same inputs."""
    if percent >= 100:
        return TrafficSplit(weights={plan.candidate: 1.0})
    if percent <= 0:
        return TrafficSplit(weights={plan.baseline: 1.0})
    return TrafficSplit(
        weights={plan.baseline: 100 - percent, plan.candidate: percent}, shadow=plan.candidate
    )


class Controller:
    def __init__(
        self,
        folder: RolloutFolder,
        plan: RolloutPlan,
        apply: ApplySplit,
        verdicts: Counter,
        adopt: RolloutState | None = None,
    ) -> None:
        """Start `plan`, or with `adopt`, take over that rollout from its silent owner."""
        self.folder = folder
        self.apply = apply
        self.verdicts = verdicts
        self.policy = plan.judge_policy()
        self.required: Mapping[str, int] = required_samples(self.policy)
        self.reader = EvidenceReader(folder.samples, plan.baseline, plan.candidate)
        self.deposed = False
        """Another replica took the rollout over: this controller has stopped."""
        now = time.time()
        if adopt is not None:
            self.state = adopt
            self._take_over(now)
            return
        self.state = RolloutState(plan=plan, owner=replica_id(), required=dict(self.required))
        self._enter_step(1, now)
        self._decide(now, "start", f"{plan.baseline} -> {plan.candidate}, steps {plan.steps}")

    async def run(self) -> None:
        """Tick until the rollout finishes or is taken over; a failing tick is logged and
        retried."""
        while True:
            try:
                await self.tick(time.time())
            except Exception:
                log.exception("rollout tick failed; retrying")
            if self.state.finished or self.deposed:
                return
            await asyncio.sleep(TICK_S)

    async def tick(self, now: float) -> None:
        state = self.state
        if self._replaced():
            self.deposed = True
            log.warning("rollout %s was taken over by another replica; stopping here", state.id)
            return
        if pending := self.folder.commands_after(state.command_seen, state.id):
            state.command_seen = pending[-1].id
            self.commands(pending, now)
        if state.status == "running":
            if state.phase == "following":
                await self._wait_for_replicas(now)
            if state.phase == "collecting":
                await self._collect(now)
        state.heartbeat = now
        self.folder.write_state(state)

    def release(self) -> None:
        """This process stops: hand the rollout on, so another replica takes it over at
        once instead of waiting for the heartbeat to go stale."""
        if not self.state.finished and not self.deposed and not self._replaced():
            self.state.released = True
            self.folder.write_state(self.state)

    def commands(self, sent: list[SentCommand], now: float) -> None:
        """Commands in the order sent, except that an abort among them goes first: once a
        person asked for the candidate to go, nothing sent in the same tick keeps it."""
        ordered = sorted(sent, key=lambda one: one.command != "abort")
        for one in ordered:
            if not self.command(one.command, now):
                self._decide(
                    now, "ignore", f"{one.command} (command {one.id}) ignored: {self.state.status}"
                )

    def command(self, command: Command, now: float) -> bool:
        """A person's command; False (and nothing done) when it would not change the state."""
        state = self.state
        if state.finished:
            return False
        if command == "pause" and state.status == "running":
            state.status = "paused"
            self._decide(now, "pause", "paused by request; the split is left as it is")
        elif command == "resume" and state.status == "paused":
            state.status = "running"
            self._decide(now, "resume", "resumed by request; the step starts a new window")
            self._enter_step(state.step, now)
        elif command == "abort":
            self._set_split(0.0)
            state.status = "aborted"
            self._decide(now, "abort", f"aborted by request; {state.plan.candidate} weight 0")
        elif command == "promote":
            self._set_split(100.0)
            state.status = "promoted"
            self._decide(now, "promote", f"promoted by request; {state.plan.candidate} 100%")
        else:
            return False
        return True

    def _take_over(self, now: float) -> None:
        """Own an adopted rollout; a running one starts its step again (the split set
        anew, a new window), since what happened while no one watched is unknown."""
        state = self.state
        previous, age = state.owner, state.heartbeat_age(now)
        gone = "stopped" if state.released else f"silent for {age:.1f} s"
        state.owner, state.released = replica_id(), False  # the generation is the claim's
        self._decide(now, "takeover", f"controller {previous} {gone}; taken over by {state.owner}")
        if state.status == "running":
            self._enter_step(state.step, now)

    def _replaced(self) -> bool:
        """Whether the folder holds another rollout, or this one at a higher generation."""
        current = self.folder.read_state()
        return current is not None and (
            current.id != self.state.id or current.generation > self.state.generation
        )

    def _enter_step(self, step: int, now: float) -> None:
        state = self.state
        state.step, state.extensions, state.phase = step, 0, "following"
        state.window_deadline = now + state.plan.window_seconds  # for following, too
        self._set_split(state.plan.steps[step - 1])
        if state.plan.dry_run:
            self._open_window(now)

    def _set_split(self, percent: float) -> None:
        state = self.state
        split = step_split(state.plan, percent)
        if state.plan.dry_run:
            state.weights = split.weights  # the plan's weights, reported but never applied
            return
        state.split_version = self.apply(split)
        state.weights = split.weights

    async def _wait_for_replicas(self, now: float) -> None:
        """Open the window once every live worker serves the step's split; a replica
        that does not follow within a window's time pauses the rollout, since its
        traffic would not be what the step says."""
        state = self.state
        reports = await asyncio.to_thread(self.reader.replicas)
        live = [report for report in reports if report.age_s < STALE_S]
        behind = [r.replica for r in live if r.split_version < (state.split_version or 0)]
        if live and not behind:
            self._open_window(now)
        elif now >= state.window_deadline:
            state.status = "paused"
            waiting = ", ".join(behind) or "no replica published"
            self._decide(
                now, "pause", f"split version {state.split_version} not followed by {waiting}"
            )

    def _open_window(self, now: float) -> None:
        state = self.state
        state.phase = "collecting"
        state.window_start = now
        state.window_deadline = now + state.plan.window_seconds
        state.samples = {}

    async def _collect(self, now: float) -> None:
        state = self.state
        evidence = await asyncio.to_thread(self.reader.read, state.window_start)
        state.samples = {
            state.plan.baseline: len(evidence.baseline.latencies_s),
            state.plan.candidate: len(evidence.candidate.latencies_s),
            "shadow": evidence.shadow.compared,
        }
        if self._enough(evidence) or now >= state.window_deadline:
            await self._judge(evidence, now)

    def _enough(self, evidence: Evidence) -> bool:
        """Every gate has the samples it needs: compared rows (predictions), requests
        (errors) or answers (latency, slo) from both variants."""
        baseline, candidate = evidence.baseline, evidence.candidate
        have = {
            "predictions": evidence.shadow.compared,
            "errors": min(baseline.requests, candidate.requests),
        }
        answered = min(len(baseline.latencies_s), len(candidate.latencies_s))
        return all(have.get(gate, answered) >= n for gate, n in self.required.items())

    async def _judge(self, evidence: Evidence, now: float) -> None:
        state = self.state
        shadow = evidence.shadow if evidence.shadow.compared else None
        verdicts = await asyncio.to_thread(
            judge, evidence.baseline, evidence.candidate, shadow, self.policy
        )
        outcome = combine(verdicts)
        state.gates = [
            GateRecord(gate=v.gate, outcome=v.outcome, reason=v.reason, figures=dict(v.figures))
            for v in verdicts
        ]
        for verdict in verdicts:
            self.verdicts.labels(verdict.gate, verdict.outcome).inc()
        reasons = "; ".join(f"{v.gate} {v.outcome}: {v.reason}" for v in verdicts)
        self._decide(now, outcome, reasons)
        if outcome == "pass":
            self._passed(now)
        elif outcome == "fail":
            self._failed(now)
        else:
            self._inconclusive(now)

    def _passed(self, now: float) -> None:
        state = self.state
        if state.step < len(state.plan.judged_steps):
            self._enter_step(state.step + 1, now)
            self._decide(now, "advance", f"step {state.step}: {self._percent()}%")
        elif state.plan.dry_run:
            state.status = "dry_run_done"
            self._decide(now, "done", "every step passed; dry run, the split was left alone")
        else:
            self._set_split(100.0)
            state.step = len(state.plan.steps)
            state.status = "promoted"
            self._decide(now, "promote", f"every step passed; {state.plan.candidate} at 100%")

    def _failed(self, now: float) -> None:
        state = self.state
        if state.plan.dry_run:
            state.status = "dry_run_done"
            self._decide(now, "done", "failed; dry run, the split was left alone")
        elif state.plan.on_fail == "rollback":
            self._set_split(0.0)
            state.status = "rolled_back"
            self._decide(now, "rollback", f"{state.plan.candidate} weight 0")
        else:
            state.status = "paused"
            self._decide(now, "pause", "failed; paused for a person (--on-fail pause)")

    def _inconclusive(self, now: float) -> None:
        state = self.state
        if state.extensions < state.plan.max_extensions:
            state.extensions += 1
            state.window_deadline = now + state.plan.window_seconds
            self._decide(
                now, "extend", f"extension {state.extensions} of {state.plan.max_extensions}"
            )
        else:
            state.status = "paused"
            self._decide(now, "pause", "still inconclusive after every extension; paused")

    def _percent(self) -> float:
        return self.state.plan.steps[self.state.step - 1]

    def _decide(self, now: float, action: str, detail: str) -> None:
        state = self.state
        weight = state.weights.get(state.plan.candidate, 0.0)
        state.decisions.append(
            Decision(at=now, step=state.step, weight=weight, action=action, detail=detail)
        )
        log.info(
            "rollout %s: step %d (%s %.1f%%): %s",
            action,
            state.step,
            state.plan.candidate,
            weight * 100,
            detail,
        )

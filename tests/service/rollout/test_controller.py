"""The controller's state machine on a real shared folder, without a server: evidence is
published by real sample recorders (two replicas), judged by the real judge."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.rollout.controller import Controller
from service.rollout.journal import Journal
from service.rollout.plan import RolloutPlan, RolloutState
from service.rollout.samples import SampleRecorder
from service.rollout.shared import RolloutFolder
from service.routing import TrafficSplit

POLICY = {"family_alpha": 0.05, "detect_factor": 6.0, "latency_superiority": 0.7}


class Replicas:
    """Two replicas' recorders, publishing into the folder at the split version they follow."""

    def __init__(self, folder: RolloutFolder) -> None:
        self.folder = folder
        self.recorders = {name: SampleRecorder(100_000) for name in ("a-1", "b-2")}
        self.journals = {name: Journal(folder.samples, name, 100_000) for name in self.recorders}
        self.version = 0
        self.splits: list[TrafficSplit] = []
        self.random = np.random.default_rng(3)

    def apply(self, split: TrafficSplit) -> int:
        self.splits.append(split)
        self.version += 1
        return self.version

    def serve(
        self, state: RolloutState, n: int, candidate_slowdown: float = 1.0, flip: float = 0.0
    ) -> None:
        """`n` requests per variant on each replica, and as many shadow comparisons."""
        plan = state.plan
        for name, recorder in self.recorders.items():
            recorder.follow(plan.baseline, plan.candidate, state.window_start)
            for variant, factor in ((plan.baseline, 1.0), (plan.candidate, candidate_slowdown)):
                for duration in self.random.lognormal(np.log(0.002), 0.3, n) * factor:
                    recorder.record(variant, float(duration), 200)
            scores = self.random.uniform(0.0, 1.0, n)
            flipped = self.random.uniform(0.0, 1.0, n) < flip
            recorder.compare(flipped, scores, np.where(flipped, 1 - scores, scores))
            self.journals[name].publish(self.version, *recorder.take())


def controller(tmp_path: Path, replicas: Replicas, **plan: object) -> Controller:
    rollout = RolloutPlan.model_validate(
        {"baseline": "base", "candidate": "cand", "policy": POLICY, **plan}
    )
    verdicts = Metrics(CollectorRegistry()).rollout_verdicts
    return Controller(replicas.folder, rollout, replicas.apply, verdicts)


async def run_until_settled(control: Controller, replicas: Replicas, **serve: float) -> None:
    """Tick, serving evidence whenever a window is open, until the rollout stops."""
    for _ in range(200):
        await control.tick(time.time())
        if control.state.status != "running":
            return
        replicas.serve(control.state, 200 if control.state.phase == "collecting" else 0, **serve)
    pytest.fail(f"rollout never settled: {control.state.decisions}")


@pytest.fixture
def replicas(tmp_path: Path) -> Replicas:
    return Replicas(RolloutFolder(tmp_path / "rollout"))


async def test_a_healthy_candidate_is_promoted_through_every_step(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas, steps=[1, 5, 20, 50, 100])
    await run_until_settled(control, replicas)
    state = control.state
    assert state.status == "promoted", state.decisions
    candidate_weights = [split.weights.get("cand", 0.0) for split in replicas.splits]
    assert candidate_weights == pytest.approx([0.01, 0.05, 0.2, 0.5, 1.0])
    assert [d.action for d in state.decisions].count("advance") == 3
    assert {gate.outcome for gate in state.gates} == {"pass"}
    assert replicas.folder.read_state() == state


async def test_a_slower_candidate_is_rolled_back_at_the_first_step(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas, steps=[5, 50, 100])
    await run_until_settled(control, replicas, candidate_slowdown=1.5)
    state = control.state
    assert state.status == "rolled_back" and state.step == 1
    assert replicas.splits[-1].weights == {"base": 1.0}
    latency = next(gate for gate in state.gates if gate.gate == "latency")
    assert latency.outcome == "fail" and latency.figures, latency


async def test_flipped_predictions_fail_the_predictions_gate_and_pause_when_asked(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas, steps=[5, 100], on_fail="pause")
    await run_until_settled(control, replicas, flip=0.2)
    state = control.state
    assert state.status == "paused"
    predictions = next(gate for gate in state.gates if gate.gate == "predictions")
    assert predictions.outcome == "fail", predictions
    assert replicas.splits[-1].weights["cand"] == pytest.approx(0.05)  # left as it was


async def test_too_little_traffic_is_inconclusive_then_paused(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas, window_seconds=0.01, max_extensions=2)
    for tick in range(1, 21):
        replicas.serve(control.state, 0)  # replicas alive and following, no traffic
        await control.tick(time.time() + 0.02 * tick)  # each tick past a window's end
        if control.state.status != "running":
            break
    actions = [d.action for d in control.state.decisions]
    assert control.state.status == "paused"
    assert actions.count("extend") == 2 and "fail" not in actions and "pass" not in actions


async def test_commands_from_the_folder_pause_resume_and_abort(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas)
    seen = []
    for command in ("pause", "resume", "abort"):
        replicas.folder.send(command, control.state.id)
        await control.tick(time.time())
        seen.append(control.state.status)
    assert seen == ["paused", "running", "aborted"]
    assert replicas.splits[-1].weights == {"base": 1.0}


async def test_a_dry_run_never_changes_the_split(tmp_path: Path, replicas: Replicas) -> None:
    control = controller(tmp_path, replicas, steps=[10, 50, 100], dry_run=True)
    await run_until_settled(control, replicas)
    assert control.state.status == "dry_run_done"
    assert replicas.splits == []


async def test_a_replica_that_does_not_follow_the_split_pauses_the_rollout(
    tmp_path: Path, replicas: Replicas
) -> None:
    control = controller(tmp_path, replicas, window_seconds=0.05)
    replicas.version = -5  # the replicas publish a version older than the one set
    for tick in range(1, 21):
        replicas.serve(control.state, 0)
        await control.tick(time.time() + 0.01 * tick)  # the replicas' time to follow passes
        if control.state.status != "running":
            break
    assert control.state.status == "paused"
    assert "not followed by a-1, b-2" in control.state.decisions[-1].detail

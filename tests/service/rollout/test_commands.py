"""Commands sent to a rollout are never lost: one entry each, numbered without clocks,
applied in order, and an abort wins over whatever else arrived in the same tick."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.rollout.controller import Controller
from service.rollout.plan import RolloutPlan
from service.rollout.shared import RolloutFolder
from service.routing import TrafficSplit


def controller(folder: RolloutFolder, splits: list[TrafficSplit]) -> Controller:
    plan = RolloutPlan(baseline="base", candidate="cand", steps=[1, 100])

    def apply(split: TrafficSplit) -> int:
        splits.append(split)
        return len(splits)

    return Controller(folder, plan, apply, Metrics(CollectorRegistry()).rollout_verdicts)


async def test_abort_then_pause_within_one_tick_ends_aborted(tmp_path: Path) -> None:
    folder, splits = RolloutFolder(tmp_path), list[TrafficSplit]()
    control = controller(folder, splits)
    folder.send("abort", control.state.id)
    folder.send("pause", control.state.id)
    await control.tick(time.time())
    assert control.state.status == "aborted"
    assert splits[-1].weights == {"base": 1.0} and splits[-1].shadow is None
    assert [d.action for d in control.state.decisions][-2:] == ["abort", "ignore"]


async def test_pause_then_abort_in_one_tick_also_ends_aborted(tmp_path: Path) -> None:
    folder, splits = RolloutFolder(tmp_path), list[TrafficSplit]()
    control = controller(folder, splits)
    folder.send("pause", control.state.id)
    folder.send("abort", control.state.id)
    await control.tick(time.time())
    assert control.state.status == "aborted"


async def test_pause_then_resume_in_one_tick_are_both_applied_in_order(tmp_path: Path) -> None:
    folder, splits = RolloutFolder(tmp_path), list[TrafficSplit]()
    control = controller(folder, splits)
    folder.send("pause", control.state.id)
    folder.send("resume", control.state.id)
    await control.tick(time.time())
    actions = [d.action for d in control.state.decisions]
    assert actions[-2:] == ["pause", "resume"] and control.state.status == "running"


def test_concurrent_senders_get_distinct_rising_ids_whatever_their_clocks(
    tmp_path: Path,
) -> None:
    folders = [RolloutFolder(tmp_path) for _ in range(4)]  # four replicas, one folder
    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(lambda i: folders[i % 4].send("pause", "r1"), range(200)))
    ids = sorted(command.id for command in sent)
    assert ids == list(range(1, 201))
    assert [c.id for c in folders[0].commands_after(0, "r1")] == ids


def test_commands_of_another_rollout_are_not_taken(tmp_path: Path) -> None:
    folder = RolloutFolder(tmp_path)
    folder.send("abort", "old")
    mine = folder.send("pause", "new")
    assert [c.id for c in folder.commands_after(0, "new")] == [mine.id]

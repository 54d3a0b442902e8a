"""The shared split when its file misbehaves: a read-only folder (a ConfigMap) is followed
and never written, a corrupt file is repaired by the next change, and a file that cannot
be read for a moment (a symlink loop) neither stops the follower nor goes unreported; nor
does a rollout's samples folder replaced for a moment stop the evidence."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.routing import Router, TrafficSplit
from service.shared_split import ReadOnlySplit, SharedSplit
from service.supervision import LoopHealth, supervise
from tests.utils import ADMIN, ADMIN_TOKEN, eventually_async
from tests.utils.inprocess import InProcess, serving
from tests.utils.mounts import config_map_volume, read_only

VARIANTS = ["sklearn_fp32", "onnx_fp32", "onnx_int8"]
FOLLOW_BOUND_S = 10.0
"""Generous against the poll periods below for a loaded 2-core machine."""


def follower(path: Path) -> SharedSplit:
    router = Router(VARIANTS, TrafficSplit(weights={"sklearn_fp32": 1}))
    split = SharedSplit(router, path, lambda _, __: None)
    split.start(router.split)
    return split


@pytest.mark.integration  # mount(8) runs as a process
def test_a_read_only_folder_is_followed_never_written(tmp_path: Path) -> None:
    volume = tmp_path / "split"
    config_map_volume(volume, {"traffic.json": '{"weights": {"onnx_fp32": 1}}'})
    with read_only(volume) as mounted:
        with pytest.raises(OSError, match="Read-only"):
            (mounted / "probe").touch()  # root included
        split = follower(mounted / "traffic.json")
        assert split.read_only and split.current[0].weights == {"onnx_fp32": 1.0}
        with pytest.raises(ReadOnlySplit, match="ConfigMap"):
            split.set(TrafficSplit(weights={"onnx_int8": 1}))
        # The kubelet's update: a new folder behind `..data`, visible through the mount.
        config_map_volume(volume, {"traffic.json": '{"version": 7, "weights": {"onnx_int8": 1}}'})
        asyncio.run(split.poll())
        assert split.current[0].weights == {"onnx_int8": 1.0} and split.current[1] == 7
        assert sorted(p.name for p in mounted.iterdir() if not p.name.startswith("..")) == [
            "traffic.json"
        ]


@pytest.mark.integration  # mount(8) runs as a process
def test_a_missing_file_in_a_read_only_folder_stops_start_up(tmp_path: Path) -> None:
    with read_only(tmp_path) as mounted, pytest.raises(ValueError, match="read-only"):
        follower(mounted / "traffic.json")


async def test_a_corrupt_split_file_is_repaired_by_the_next_change(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "traffic.json"
    settings: dict[str, Any] = {
        "split_file": path,
        "admin_token": ADMIN_TOKEN,
        "split_poll_s": 0.05,
    }
    async with serving(store, **settings) as app:
        put = await app.client.put("/traffic", json={"weights": {"onnx_int8": 1}}, headers=ADMIN)
        assert put.json()["version"] == 2
        path.write_text('{"version": 3, "weights": {"onnx_int8": ')  # a torn hand edit
        repaired = await app.client.put(
            "/traffic", json={"weights": {"sklearn_fp32": 1}}, headers=ADMIN
        )
        assert repaired.status_code == 200, repaired.text
        assert repaired.json()["version"] == 3  # after the last good one
        assert json.loads(path.read_text())["weights"] == {"sklearn_fp32": 1.0}
        assert "is corrupt" in caplog.text and "after version 2" in caplog.text
        path.write_text("not json")
        plan = {"baseline": "sklearn_fp32", "candidate": "onnx_int8", "window_seconds": 5}
        started = await app.client.post("/rollout/start", json=plan, headers=ADMIN)
        assert started.status_code == 202, started.text
        await app.client.post("/rollout/abort", headers=ADMIN)


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    await eventually_async(condition, FOLLOW_BOUND_S, what=what)


async def test_a_symlink_loop_for_a_moment_is_logged_and_the_follower_catches_up(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="perfserve")
    path = tmp_path / "traffic.json"
    settings: dict[str, Any] = {
        "split_file": path,
        "split_poll_s": 0.05,
        "loop_unready_after_s": 0.5,
    }
    async with serving(store, **settings) as app:
        assert app.sample("perfserve_background_loop_healthy", loop="split") == 1
        path.unlink()
        path.symlink_to(path.name)  # ELOOP on every stat and open
        await wait_for(lambda: healthy(app, "split") == 0, "the failure was not exported")
        assert "background loop split failed" in caplog.text
        assert "Too many levels of symbolic links" in caplog.text
        await wait_for_status(app, 503)
        assert "background loop split failing" in (await app.client.get("/readyz")).text
        path.unlink()
        path.write_text('{"version": 4, "weights": {"onnx_int8": 1}}')
        await wait_for(
            lambda: app.service.traffic.split.current[1] == 4, "the replica did not catch up"
        )
        assert app.service.traffic.router.split.weights == {"onnx_int8": 1.0}
        await wait_for_status(app, 200)
        assert healthy(app, "split") == 1 and "background loop split recovered" in caplog.text
        assert app.sample("perfserve_background_loop_failures_total", loop="split") >= 1


async def test_a_samples_folder_replaced_for_a_moment_stops_no_evidence(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings: dict[str, Any] = {"split_file": tmp_path / "traffic.json", "admin_token": ADMIN_TOKEN}
    async with serving(store, **settings) as app:
        plan = {"baseline": "sklearn_fp32", "candidate": "onnx_int8", "window_seconds": 600}
        started = await app.client.post("/rollout/start", json=plan, headers=ADMIN)
        assert started.status_code == 202, started.text
        samples = app.service.canary.rollouts.folder.samples
        mine = samples / f"{app.service.canary.rollouts.replica}.json"
        await wait_for(mine.exists, "no evidence was published")
        shutil.rmtree(samples)
        samples.write_text("not a folder")  # the folder replaced by a file
        await wait_for(lambda: healthy(app, "rollout") == 0, "the failure was not exported")
        assert "background loop rollout failed" in caplog.text
        samples.unlink()
        await wait_for(mine.exists, "evidence was never published again")
        await wait_for(lambda: healthy(app, "rollout") == 1, "the loop did not recover")
        await app.client.post("/rollout/abort", headers=ADMIN)


def healthy(app: InProcess, loop: str) -> float:
    return app.sample("perfserve_background_loop_healthy", loop=loop)


async def wait_for_status(app: InProcess, status: int) -> None:
    async def answers() -> bool:
        return (await app.client.get("/readyz")).status_code == status

    await eventually_async(answers, FOLLOW_BOUND_S, 0.05, f"/readyz never answered {status}")


async def test_every_loop_survives_an_exception_in_any_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    health = LoopHealth(metrics.background_loop_healthy, metrics.background_loop_failures, 60)
    runs: list[int] = []

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) in (2, 3):
            raise OSError(40, "Too many levels of symbolic links")
        if len(runs) == 4:
            raise asyncio.InvalidStateError("a bug")

    task = asyncio.create_task(supervise("probe", step, 0.001, health))
    await wait_for(lambda: len(runs) >= 6, "the loop stopped")
    task.cancel()
    failures = metrics.registry.get_sample_value(
        "perfserve_background_loop_failures_total", {"loop": "probe"}
    )
    assert failures == 3
    assert caplog.text.count("background loop probe failed") == 1  # once per run of failures
    assert "recovered" in caplog.text

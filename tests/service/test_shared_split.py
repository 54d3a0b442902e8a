"""One split for every replica: servers sharing a split file follow each other's changes
within the stated delay, report one version, and a replica started later joins it."""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import ServerProcess, running_server
from service.routing import Router, TrafficSplit
from service.shared_split import SharedSplit
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_ENV, body, eventually, run_perfserve

VARIANTS = ["sklearn_fp32", "onnx_fp32", "onnx_int8"]
POLL_S = 0.2
FOLLOW_BOUND_S = 3.0
"""Generous against the stated delay (one poll, 0.2 s) for a loaded 2-core machine."""


def replica(store: Path, split_file: Path, *extra: str) -> AbstractContextManager[ServerProcess]:
    options = ["--split-file", str(split_file), *extra, "--split-poll-s", str(POLL_S)]
    return running_server(store, options=options, env=ADMIN_ENV)


def traffic(server: ServerProcess) -> dict[str, object]:
    answer: dict[str, object] = httpx.get(f"{server.url}/traffic").json()
    return answer


def wait_for_version(server: ServerProcess, version: int) -> float:
    """Seconds until the server reports `version`; fails past FOLLOW_BOUND_S."""
    started = time.monotonic()
    eventually(lambda: traffic(server)["version"] == version, FOLLOW_BOUND_S, 0.01, f"{server.url}")
    return time.monotonic() - started


def split_version(server: ServerProcess) -> float | None:
    text = httpx.get(f"{server.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "perfserve_split_version":
                return sample.value
    return None


@pytest.mark.integration
def test_replicas_follow_a_change_made_on_either_and_a_late_one_joins(
    store: Path, holdout: Dataset, tmp_path: Path
) -> None:
    (tmp_path / "volume").mkdir()
    split_file = tmp_path / "volume" / "traffic.json"
    canary = {"weights": {"sklearn_fp32": 0.8, "onnx_int8": 0.2}}
    everything = {"weights": {"onnx_int8": 1.0}, "shadow": "onnx_fp32"}
    with replica(store, split_file) as a, replica(store, split_file) as b:
        assert traffic(a)["version"] == traffic(b)["version"] == 1

        put = httpx.put(f"{a.url}/traffic", json=canary, headers=ADMIN).json()
        assert put["version"] == 2
        followed_b = wait_for_version(b, 2)
        put = httpx.put(f"{b.url}/traffic", json=everything, headers=ADMIN).json()
        assert put["version"] == 3
        followed_a = wait_for_version(a, 3)

        assert traffic(a) == traffic(b)
        assert traffic(a)["weights"] == {"onnx_int8": 1.0}
        assert split_version(a) == split_version(b) == 3
        served = {
            httpx.post(f"{b.url}/predict", json=body(holdout.features[:1])).headers["x-variant"]
            for _ in range(10)
        }
        assert served == {"onnx_int8"}

        # A replica started now takes the file's split, not the one it was given.
        with replica(store, split_file, "--traffic", "sklearn_fp32=1") as late:
            assert traffic(late) == traffic(a)

        # Without the volume a change cannot be shared: refused, and the split stays.
        shutil.rmtree(split_file.parent)
        refused = httpx.put(f"{a.url}/traffic", json=canary, headers=ADMIN)
        assert refused.status_code == 503 and "split file" in refused.json()["detail"]
        assert traffic(a)["version"] == 3
    print(f"followed within {followed_b:.3f} s and {followed_a:.3f} s (poll {POLL_S} s)")


@pytest.mark.integration
def test_a_split_file_naming_unknown_variants_stops_start_up(store: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "traffic.json"
    split_file.write_text('{"version": 4, "weights": {"onnx_int9": 1}}')
    done = run_perfserve("serve", "--store", str(store), "--split-file", str(split_file))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--split-file" in done.stderr and "onnx_int9" in done.stderr


def shared(path: Path, changes: list[int] | None = None) -> SharedSplit:
    """What one process keeps: a router following the file; `changes` records versions."""
    versions = changes if changes is not None else []
    router = Router(VARIANTS, TrafficSplit(weights={"sklearn_fp32": 1}))
    split = SharedSplit(router, path, lambda _, version: versions.append(version))
    split.start(router.split)
    return split


def test_concurrent_writers_get_distinct_versions_and_leave_no_temporary_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traffic.json"
    writers = [shared(path) for _ in range(4)]  # as four processes would, one file each
    versions: list[int] = []

    def write(split: SharedSplit, share: float) -> None:
        canary = TrafficSplit(weights={"sklearn_fp32": 1 - share, "onnx_int8": share})
        versions.extend(split.set(canary) for _ in range(10))

    threads = [threading.Thread(target=write, args=(w, i / 10)) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(2, 42))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traffic.json", "traffic.json.lock"]
    follower = shared(path)
    assert follower.current[1] == 41


def test_a_second_write_in_the_same_clock_tick_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "traffic.json"
    changes: list[int] = []
    writer, follower = shared(path), shared(path, changes)
    writer.set(TrafficSplit(weights={"onnx_int8": 1}))
    assert follower.sync() and follower.current[0].weights == {"onnx_int8": 1.0}
    tick = path.stat().st_mtime_ns
    writer.set(TrafficSplit(weights={"onnx_fp32": 1}))  # same size, same time below
    os.utime(path, ns=(tick, tick))
    assert follower.sync() and follower.current[0].weights == {"onnx_fp32": 1.0}
    assert changes == [1, 2, 3]


def test_a_broken_file_is_ignored_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "traffic.json"
    follower = shared(path)
    path.write_text('{"version": 9, "weights": {"onnx_int8": NaN}}')
    with pytest.raises(ValueError, match="finite"):
        follower.sync()
    assert follower.current[1] == 1 and not follower.sync()  # reported once, split kept
    path.write_text('{"version": 10, "weights": {"onnx_int8": 1}, "shadow": "onnx_fp32"}')
    assert follower.sync() and follower.current[1] == 10

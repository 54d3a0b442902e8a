"""`perfserve profile --memory` for real: memray over a window of requests, and a leak
check: RSS and live objects flat across two windows of the same load, and not flat for
a build that keeps two objects per request (bounded: three windows of 4 s at 2,000/s
after a 2 s warm-up, 8,000 requests a window, more than the live-object count's own
jitter of a few thousand)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perfserve.benchmarks.profile.memory import memory_profile
from perfserve.benchmarks.profile.run import ProfileSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
LEAK = Path(__file__).resolve().parent / "leak_hook"
SETTINGS = ProfileSettings("onnx_int8", rate=2000.0, seconds=16.0, repeats=4, generator_cpu=1)


def test_serving_allocates_per_request_and_does_not_leak(store: Path, tmp_path: Path) -> None:
    text = memory_profile(store, SETTINGS, cpu=0, out=tmp_path)
    result = json.loads((tmp_path / "memory.json").read_text())
    assert result["flat"], result
    assert result["objects_between_windows"] < result["window_requests"][1]
    assert result["rss_between_windows_bytes"] < max(2**20, 64 * result["window_requests"][1])
    assert result["tracked_requests"] > 4000
    assert 100 < result["bytes_allocated_per_request"] < 10_000_000
    assert result["top_sites_by_size"] and result["top_sites_by_count"]
    assert "Allocated per request" in text and (tmp_path / "memory.md").exists()


def test_a_build_that_keeps_objects_per_request_is_not_flat(store: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(LEAK), str(ROOT)])}
    memory_profile(store, SETTINGS, cpu=0, out=tmp_path, env=env)
    result = json.loads((tmp_path / "memory.json").read_text())
    assert not result["flat"], result
    assert result["objects_between_windows"] > result["window_requests"][1]
    assert result["rss_between_windows_bytes"] > 2**20

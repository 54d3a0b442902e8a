"""`perfserve bench-cache`'s report: each mix's cached server read against the other, and
the command's answer when wrk is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.http.cache_gain import CacheCell, render
from perfserve.cli import main
from perfserve.cli.exit_codes import ExitCode


def cell(cached: bool, rps: float, p50_ms: float, cpu_us: float) -> CacheCell:
    name = "onnx_int8 cache" if cached else "onnx_int8 no cache"
    found = CacheCell(name, 64, mix="zipf:0.9", cached=cached)
    found.rps, found.p50_ms, found.p99_ms, found.cpu_us = [rps], [p50_ms], [p50_ms * 3], [cpu_us]
    if cached:
        found.hit_ratio = [0.88, 0.9, 0.91]
    return found


def test_the_gain_is_the_cached_server_over_the_other_in_the_same_mix() -> None:
    report = render([cell(False, 1000, 4.0, 50.0), cell(True, 1500, 3.0, 40.0)], 512)
    assert "| zipf:0.9 | onnx_int8 cache | 64 | 1,500 | 3.000 | 9.000 | 40.0 | 0.90 | 0 |" in report
    assert "| zipf:0.9 | 64 | 1.50x | 0.75x | 0.80x |" in report
    assert "cache of 512 rows over none" in report


def test_without_wrk_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["bench-cache", "--store", str(tmp_path / "store")]) == ExitCode.ENVIRONMENT
    assert "apt-get install wrk" in capsys.readouterr().err

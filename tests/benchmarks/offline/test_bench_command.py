"""`perfserve bench` from the command line: progress, outputs, history, and usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfserve.cli import main

TINY = ["--batch-sizes", "1", "--runs", "8", "--min-block-ms", "5", "--warmup", "2"]


@pytest.mark.integration
def test_bench_command_writes_everything_and_flags_a_regression(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "bench",
        "--store",
        str(store),
        "--variants",
        "onnx_fp32,onnx_int8",
        *TINY,
        "--out",
        str(tmp_path / "out"),
        "--history",
        str(tmp_path / "history"),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "run 8/8" in captured.err and "operator breakdown" in captured.err
    assert "first on this machine: the baseline" in captured.out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["plan"]["baseline"] == "onnx_fp32"  # the reference is not benched

    slowed = [*args, "--inject-latency-ms", "onnx_int8=2", "--fail-on-regression"]
    assert main(slowed) == 1
    out = capsys.readouterr().out
    assert "onnx_int8 is **slower**" in out
    assert "REGRESSION against" in out and "onnx_int8 at batch 1" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["variants"]["onnx_int8"]["injected_delay_ms"] == 2.0
    assert len(list((tmp_path / "history").glob("*/*/*/*-bench.json"))) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--variants", "onnx_fp16"], "not in the store"),
        (["--batch-sizes", "2048"], "batch sizes must be 1..1024"),
        (["--runs", "1"], "--runs >= 2"),
        (["--inject-latency-ms", "nope=1"], "not benchmarked"),
        (["--weights", "speed=1"], "unknown weight"),
        (["--baseline", "other"], "baseline 'other'"),
        (["--headline-batch-size", "8"], "headline batch size 8"),
        (["--bench-cpus", "4096"], "CPUs [4096] are not all available"),
    ],
)
def test_bench_command_usage_errors(
    store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    args = ["bench", "--store", str(store), *TINY, "--out", str(tmp_path), *options]
    assert main(args) == 2
    assert message in capsys.readouterr().err

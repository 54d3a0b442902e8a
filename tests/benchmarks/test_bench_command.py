"""`perfserve bench` from the command line: progress, outputs, history, and usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main

TINY = ["--batch-sizes", "1", "--runs", "8", "--calls-per-run", "3", "--warmup", "1"]


def test_bench_command_writes_everything_and_records_history(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "bench",
        "--store",
        str(store),
        "--variants",
        "onnx_fp32,onnx_int8",
        *TINY,
        "--inject-latency-ms",
        "onnx_int8=2",
        "--out",
        str(tmp_path / "out"),
        "--history",
        str(tmp_path / "history"),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "run 8/8" in captured.err and "operator breakdown" in captured.err
    assert "onnx_int8 is **slower**" in captured.out
    assert "first on this machine: the baseline" in captured.out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["plan"]["baseline"] == "onnx_fp32"  # the reference is not benched
    assert summary["variants"]["onnx_int8"]["injected_delay_ms"] == 2.0
    assert len(list((tmp_path / "history").glob("*/*/*/*-bench.json"))) == 1


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

"""`perfserve bench --int8-methods`: fp32, dynamic and static int8 side by side, and which is
fastest at each batch size at equal quality (never a method whose answers depend on
batch-mates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfserve.cli import main
from service.store import Manifest

pytestmark = pytest.mark.integration  # a bench measures cold starts in fresh processes

TINY = ["--batch-sizes", "1,8", "--runs", "3", "--min-block-ms", "2", "--warmup", "1"]


def test_bench_measures_every_int8_method_and_names_the_fastest_per_batch_size(
    store: Path, manifest: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["bench", "--store", str(store), "--int8-methods", *TINY, "--out", str(out)]
    assert main([*args, "--history", str(tmp_path / "history")]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert manifest.int8 is not None
    methods = {f"int8_{method}" for method in manifest.int8.candidates}
    assert methods <= set(summary["variants"])
    variants = summary["variants"]
    assert not variants["int8_dynamic"]["batch_independent"]
    for name in ["sklearn_fp32", "onnx_fp32", "onnx_int8", "int8_static_per_channel"]:
        assert variants[name]["batch_independent"], name
    assert variants["onnx_int8"]["method"] == manifest.int8.chosen

    table = summary["fastest_by_batch_size"]
    assert [row["batch_size"] for row in table] == [1, 8]
    for row in table:
        timed = {entry["variant"]: entry["per_call_us"] for entry in row["variants"]}
        eligible = {
            entry["variant"]
            for entry in row["variants"]
            if entry["equal_quality"] and entry["batch_independent"]
        }
        assert row["fastest"] in eligible and row["fastest"] != "int8_dynamic"
        assert timed[row["fastest"]] == min(timed[name] for name in eligible)

    report = capsys.readouterr().out
    assert "## Fastest precision and method per batch size" in report
    assert "| batch | fastest at equal quality | sklearn_fp32 |" in report
    assert " b |" in report  # dynamic int8 marked as batch-dependent
    assert "- int8_dynamic: a row's answer changes with its batch-mates" in report

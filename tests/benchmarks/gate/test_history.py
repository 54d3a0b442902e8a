"""History: the first record is the baseline, a later slower or less accurate run is a
regression that is not accepted until someone accepts it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from perfserve.benchmarks.gate import history
from perfserve.benchmarks.offline.summary_types import BenchSummary
from perfserve.cli import main


def _slower(summary: BenchSummary, variant: str, factor: float) -> BenchSummary:
    changed = copy.deepcopy(summary)
    for cell in changed["variants"][variant]["batches"].values():
        cell["run_means_ms"] = [value * factor for value in cell["run_means_ms"]]
    return changed


def _steady(summary: BenchSummary) -> BenchSummary:
    """The bench with calm runs around each median: a test of the history's rules must not
    hinge on an outlier run of the loaded machine the fixture was benched on."""
    calm = copy.deepcopy(summary)
    for variant in calm["variants"].values():
        for cell in variant["batches"].values():
            median = float(np.median(cell["run_means_ms"]))
            cell["run_means_ms"] = [median * k for k in (0.98, 0.99, 1.0, 1.01, 1.02)]
    return calm


def test_a_later_slower_run_is_flagged_against_the_accepted_baseline(
    tmp_path: Path, bench_summary: BenchSummary
) -> None:
    bench_summary = _steady(bench_summary)
    first = history.record(tmp_path, "bench", bench_summary)
    assert first.data["accepted"] and first.data["baseline_id"] is None
    env = bench_summary["environment"]
    folder = tmp_path / env["machine_fingerprint"] / bench_summary["model_version"]
    assert first.path.parent == folder / env["code_revision"]

    same = history.record(tmp_path, "bench", bench_summary)
    assert same.data["accepted"] and same.data["regressions"] == []
    assert same.data["baseline_id"] == first.id

    slower = history.record(tmp_path, "bench", _slower(bench_summary, "onnx_int8", 3.0))
    assert not slower.data["accepted"]
    assert slower.data["baseline_id"] == same.id
    regressions = slower.data["regressions"]
    assert regressions and all(text.startswith("onnx_int8 at batch") for text in regressions)
    # The rejected run is not the new baseline: the next run is held to the last accepted.
    assert history.last_accepted(tmp_path, env["machine_fingerprint"]).id == same.id  # type: ignore[union-attr]
    history.accept(tmp_path, slower.id)
    assert history.last_accepted(tmp_path, env["machine_fingerprint"]).id == slower.id  # type: ignore[union-attr]


def test_quality_loss_is_a_regression(bench_summary: BenchSummary) -> None:
    worse = copy.deepcopy(bench_summary)
    worse["variants"]["onnx_fp32"]["quality"]["accuracy"] -= 0.01
    regressions = history.find_regressions(bench_summary, worse)
    assert regressions == [
        f"onnx_fp32: accuracy {bench_summary['variants']['onnx_fp32']['quality']['accuracy']:.4f}"
        f" -> {worse['variants']['onnx_fp32']['quality']['accuracy']:.4f}"
    ]


def test_a_small_slowdown_is_within_the_session_margin(bench_summary: BenchSummary) -> None:
    assert history.find_regressions(bench_summary, _slower(bench_summary, "onnx_int8", 1.05)) == []


def test_history_command_lists_and_accepts(
    tmp_path: Path, bench_summary: BenchSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    calm = _steady(bench_summary)
    first = history.record(tmp_path, "bench", calm)
    flagged = history.record(tmp_path, "bench", _slower(calm, "sklearn_fp32", 3.0))
    assert main(["history", "--history", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert flagged.id in out
    assert f"not accepted: regression against {first.id}: sklearn_fp32 at batch" in out
    assert "run-to-run spread is not known yet" in out
    assert main(["history", "--history", str(tmp_path), "accept", flagged.id]) == 0
    assert main(["history", "--history", str(tmp_path), "accept", "nope"]) == 2


def _rerun(summary: BenchSummary, factor: float, revision: str) -> BenchSummary:
    """The same bench again, every timing scaled: how a machine drifts between sessions."""
    changed = copy.deepcopy(summary)
    changed["environment"]["code_revision"] = revision
    for variant in changed["variants"].values():
        for cell in variant["batches"].values():
            cell["run_means_ms"] = [value * factor for value in cell["run_means_ms"]]
    return changed


def test_the_machines_run_to_run_spread_raises_the_bar(
    tmp_path: Path, bench_summary: BenchSummary
) -> None:
    # Unchanged code benched four times drifts by up to 30% between runs (seen on a
    # shared machine); a later revision 25% slower is within that and is not flagged.
    calm = _steady(bench_summary)
    for factor in (1.0, 1.3, 0.9, 1.2):
        history.record(tmp_path, "bench", _rerun(calm, factor, "a" * 40))
    drifted = history.record(tmp_path, "bench", _rerun(calm, 1.5, "b" * 40))
    assert drifted.data["accepted"] and drifted.data["regressions"] == []
    # Three times slower is beyond any drift seen: flagged, with the spread it had to beat.
    slow = history.record(tmp_path, "bench", _rerun(calm, 4.5, "c" * 40))
    assert not slow.data["accepted"]
    text = slow.data["regressions"][0]
    assert "this machine's run-to-run spread is ±" in text and "over 4 runs" in text
    spread = history.run_to_run_spread(history.records(tmp_path)[:4], "onnx_int8", "1")
    assert spread.dof == 3 and spread.log_sd is not None
    assert spread.threshold() > 0.3  # wider than the largest drift between the runs


def test_a_rejected_compare_says_why(tmp_path: Path, bench_summary: BenchSummary) -> None:
    rejected = history.record(
        tmp_path,
        "compare",
        bench_summary,
        accepted=False,
        extra={"verdict": "reject", "reasons": ["accuracy drops 0.02 (max 0.01)"]},
    )
    assert history.why_not_accepted(rejected.data) == [
        "the compare gate rejected the candidate: accuracy drops 0.02 (max 0.01)"
    ]


def test_another_model_is_not_held_to_this_ones_figures(
    tmp_path: Path, bench_summary: BenchSummary
) -> None:
    small = history.record(tmp_path, "bench", _steady(bench_summary))
    wide = _slower(_steady(bench_summary), "onnx_int8", 3.0)
    wide |= {"model_name": "digits-wide-mlp", "model_version": "digits-wide-mlp-0123"}
    first = history.record(tmp_path, "bench", wide)
    assert first.data["baseline_id"] is None and first.data["accepted"]
    again = history.record(tmp_path, "bench", _steady(bench_summary))
    assert again.data["baseline_id"] == small.id

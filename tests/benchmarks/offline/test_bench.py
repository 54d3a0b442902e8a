"""A real bench on the test store: the right metrics, every figure, every output file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from perfserve.benchmarks.offline.bench import BenchResult
from perfserve.benchmarks.offline.report import FILES
from perfserve.benchmarks.offline.summary_types import BenchSummary
from service.runtimes import open_runner
from service.store import Dataset, Manifest


def test_every_quality_metric_equals_scikit_learns_own(
    store: Path, manifest: Manifest, holdout: Dataset, bench_result: BenchResult
) -> None:
    reference = open_runner(
        store / manifest.variants["sklearn_fp32"].path, "sklearn", "classification"
    )
    expected_labels = reference.predict(holdout.features).labels
    for name, info in manifest.variants.items():
        prediction = open_runner(store / info.path, info.format, manifest.task).predict(
            holdout.features
        )
        y, labels = holdout.target, prediction.labels
        assert prediction.probabilities is not None
        measured = bench_result.quality[name].metrics
        assert measured["accuracy"] == metrics.accuracy_score(y, labels)
        assert measured["precision"] == metrics.precision_score(y, labels)
        assert measured["recall"] == metrics.recall_score(y, labels)
        assert measured["f1"] == metrics.f1_score(y, labels)
        assert measured["roc_auc"] == metrics.roc_auc_score(y, prediction.probabilities[:, 1])
        assert bench_result.quality[name].agreement_with_reference == np.mean(
            labels == expected_labels
        )


def test_timings_hold_the_timed_runs_only_with_threads_pinned(bench_result: BenchResult) -> None:
    assert len(bench_result.timings) == 3 * 2
    for cell in bench_result.timings.values():
        runs, calls = cell.calls.shape  # the warm-up calls are not kept
        assert runs == 4 and 5 <= calls <= 10_000
        assert np.all(cell.calls > 0)
        assert cell.cpu_seconds > 0
    assert bench_result.environment["threads"] == 1
    assert all(pool["threads"] == 1 for pool in bench_result.environment["blas_pools"])


def test_summary_has_every_figure_per_variant_and_batch(bench_summary: BenchSummary) -> None:
    assert set(bench_summary["variants"]) == {"sklearn_fp32", "onnx_fp32", "onnx_int8"}
    for variant in bench_summary["variants"].values():
        assert variant["load_memory_bytes"] > 0 and variant["load_seconds"] > 0
        for size, cell in variant["batches"].items():
            latency = cell["per_call_ms"]
            assert latency["ci_low"] <= latency["mean"] <= latency["ci_high"]
            assert latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
            assert cell["per_sample_ms"]["mean"] == pytest.approx(latency["mean"] / int(size))
            assert cell["throughput_sps"]["mean"] == pytest.approx(
                int(size) * 1000 / latency["mean"]
            )
            assert cell["cold_call_ms"] > 0 and cell["peak_inference_bytes"] >= 0
            assert cell["energy_mj_per_sample"] > 0
            assert sum(cell["stage_shares"].values()) == pytest.approx(1.0)
    sizes = {(c["candidate"], c["batch_size"]) for c in bench_summary["comparisons"]}
    assert sizes == {(v, b) for v in ("onnx_fp32", "onnx_int8") for b in (1, 8)}
    assert set(bench_summary["best"]["overall"]) <= set(bench_summary["variants"])
    # Every variant with the top accuracy is named, ties included (int8 often equals fp32).
    accuracy = {name: v["quality"]["accuracy"] for name, v in bench_summary["variants"].items()}
    top = max(accuracy.values())
    assert bench_summary["best"]["accuracy"] == [n for n, a in accuracy.items() if a == top]
    assert "4 runs cannot show any difference" in bench_summary["warnings"][0]
    assert (
        "CPU-time proxy" in bench_summary["environment"]["energy_source"]
        or bench_summary["environment"]["energy_measured"]
    )
    # With the proxy only, the score leaves energy out (it would count CPU time twice).
    dropped = any("energy weight" in w for w in bench_summary["warnings"])
    assert dropped != bench_summary["environment"]["energy_measured"]
    assert (bench_summary["plan"]["weights"]["energy"] == 0) == dropped


def test_operator_breakdown_splits_the_onnx_graph_and_the_pipeline(
    bench_summary: BenchSummary,
) -> None:
    onnx = bench_summary["variants"]["onnx_int8"]["batches"]["8"]["profiled_us"]
    assert "preprocess/Scaler" in onnx
    assert "postprocess/ArgMax" in onnx
    assert any(op.startswith("model/") and "MatMul" in op for op in onnx)
    sklearn = bench_summary["variants"]["sklearn_fp32"]["batches"]["8"]["profiled_us"]
    assert set(sklearn) == {
        "preprocess/StandardScaler",
        "model/MLPClassifier",
        "postprocess/argmax -> classes",
    }


def test_outputs_are_all_written_and_readable(bench_dir: Path, bench_summary: BenchSummary) -> None:
    for name in FILES.values():
        assert (bench_dir / name).stat().st_size > 0, name
    assert json.loads((bench_dir / "summary.json").read_text())["best"] == bench_summary["best"]
    assert (bench_dir / "tradeoffs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (bench_dir / "dashboard.csv").open() as file:
        dashboard = list(csv.DictReader(file))
    assert [row["rank"] for row in dashboard] == ["1", "2", "3"]
    assert dashboard[0]["variant"] == bench_summary["best"]["overall"][0]
    with (bench_dir / "comparisons.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert {row["metric"] for row in rows} == {"per_call_ms", "accuracy"}
    assert all(row["verdict"] for row in rows)
    report = (bench_dir / "report.md").read_text()
    assert bench_summary["best"]["overall"][0] in report and "95% CI" in report

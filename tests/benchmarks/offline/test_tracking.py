"""Optional MLflow logging, against a real local file store (needs the `mlflow` extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.offline.summary_types import BenchSummary
from perfserve.benchmarks.offline.tracking import log_run, metrics_of


def test_a_bench_is_logged_to_a_local_mlflow_store(
    tmp_path: Path, bench_summary: BenchSummary, bench_dir: Path
) -> None:
    pytest.importorskip("mlflow", reason="install perfserve[mlflow] to test MLflow logging")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    run_id = log_run(str(tmp_path / "mlruns"), "bench", bench_summary, [bench_dir / "report.md"])
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["model_version"] == bench_summary["model_version"]
    assert run.data.metrics == pytest.approx(metrics_of(bench_summary))
    assert run.data.params["runs"] == "4"
    artifacts = [item.path for item in MlflowClient(uri).list_artifacts(run_id)]
    assert artifacts == ["report.md"]


def test_metric_names_are_flat_and_per_variant_and_batch(bench_summary: BenchSummary) -> None:
    names = metrics_of(bench_summary)
    assert (
        names["onnx_int8.b8.per_call_ms_mean"]
        == bench_summary["variants"]["onnx_int8"]["batches"]["8"]["per_call_ms"]["mean"]
    )
    assert "sklearn_fp32.accuracy" in names

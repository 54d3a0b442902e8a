"""Optional: the same bench and compare runs, logged to MLflow tracking.

For users who already keep their experiments in MLflow. It is an extra
(`pip install 'perfserve[mlflow]'`), imported only when asked for; a `file:` URI or a
plain folder works offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from perfserve.benchmarks.offline.summary_types import BenchSummary
from perfserve_common.usage import MissingTool

EXPERIMENT = "perfserve"


def log_run(uri: str, kind: str, summary: BenchSummary, files: list[Path]) -> str:
    """Log one run (params, per-variant metrics, output files as artifacts); return its id."""
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store for local use but asks for an explicit opt-in.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow
    except ImportError:
        raise MissingTool("--mlflow-uri needs MLflow: pip install 'perfserve[mlflow]'") from None
    env, plan = summary["environment"], summary["plan"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{kind} {summary['model_version']}") as run:
        mlflow.set_tags(
            {
                "perfserve.kind": kind,
                "model_version": summary["model_version"],
                "code_revision": env["code_revision"],
                "machine_fingerprint": env["machine_fingerprint"],
            }
        )
        mlflow.log_params(
            {
                "variants": ",".join(plan["variants"]),
                "batch_sizes": ",".join(map(str, plan["batch_sizes"])),
                "runs": plan["runs"],
                "threads": env["threads"],
                "baseline": plan["baseline"],
            }
        )
        mlflow.log_metrics(metrics_of(summary))
        for path in files:
            mlflow.log_artifact(str(path))
    run_id: str = run.info.run_id
    return run_id


def metrics_of(summary: BenchSummary) -> dict[str, float]:
    """Flat metric names MLflow accepts: `<variant>.b<batch>.<figure>` and quality."""
    metrics: dict[str, float] = {}
    for name, variant in summary["variants"].items():
        for key, value in variant["quality"].items():
            metrics[f"{name}.{key}"] = value
        metrics[f"{name}.score"] = variant["score"]
        for size, cell in variant["batches"].items():
            prefix = f"{name}.b{size}"
            metrics[f"{prefix}.per_call_ms_mean"] = cell["per_call_ms"]["mean"]
            metrics[f"{prefix}.per_call_ms_p95"] = cell["per_call_ms"]["p95"]
            metrics[f"{prefix}.per_call_ms_p99"] = cell["per_call_ms"]["p99"]
            metrics[f"{prefix}.throughput_sps"] = cell["throughput_sps"]["mean"]
            metrics[f"{prefix}.energy_mj_per_sample"] = cell["energy_mj_per_sample"]
    return metrics

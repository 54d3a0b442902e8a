"""A regressor's store goes through the same bench: MSE/RMSE instead of accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from perfserve.benchmarks.figures import figures_from_summary
from perfserve.benchmarks.gate.decide import decide, parse_requirements
from perfserve.benchmarks.gate.score import DEFAULT_WEIGHTS
from perfserve.benchmarks.offline.bench import BenchPlan, default_specs, run_bench
from perfserve.benchmarks.offline.report import write_outputs
from perfserve.benchmarks.offline.summary import summarize
from perfserve.modelstore.build import build_store
from service.runtimes import open_runner
from service.store import Dataset, load_holdout, load_manifest

pytestmark = pytest.mark.integration  # a bench measures cold starts in fresh processes


@pytest.fixture(scope="module")
def regressor_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bunch: Any = load_diabetes()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(float)
    names = [str(name) for name in bunch.feature_names]
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(x[:300], y[:300])
    path = tmp_path_factory.mktemp("regressor") / "store"
    build_store(path, pipeline, Dataset(x[300:], y[300:], names, "progression"), "ridge")
    return path


def test_a_regressor_is_benched_with_mse_and_rmse(regressor_store: Path, tmp_path: Path) -> None:
    manifest = load_manifest(regressor_store)
    plan = BenchPlan(
        regressor_store,
        default_specs(regressor_store, manifest),
        batch_sizes=[1, 16],
        runs=3,
        calls_per_run=3,
        warmup_calls=1,
        profile_calls=2,
    )
    result = run_bench(plan, manifest, say=lambda text: None)
    holdout = load_holdout(regressor_store, manifest)
    for name, info in manifest.variants.items():
        values = open_runner(regressor_store / info.path, info.format, "regression").predict(
            holdout.features
        )
        mse = metrics.mean_squared_error(holdout.target, values.labels)
        assert result.quality[name].metrics["mse"] == pytest.approx(mse)
        assert result.quality[name].metrics["rmse"] == pytest.approx(math.sqrt(mse))
    summary = summarize(result, dict(DEFAULT_WEIGHTS))
    assert {row["metric"] for row in summary["quality_comparisons"]} == {"rmse"}
    assert all(f.quality_metric == "rmse" for f in figures_from_summary(summary))
    decision = decide(
        figures_from_summary(summary), parse_requirements({"limits": {"max_rmse": 1.0}})
    )
    assert decision.choice is None and all("max_rmse" in r[0] for r in decision.rejected.values())
    paths = write_outputs(summary, tmp_path)
    assert "rmse" in paths["report"].read_text()

"""`perfserve robustness`: perturbations that must hurt a model do, every interval holds its
estimate, the range guard's edge is where the service refuses, and the floors and the
compare rule act on the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from perfserve.benchmarks.figures import VariantFigures
from perfserve.benchmarks.gate.compare import GateRow, drop_reasons
from perfserve.benchmarks.gate.decide import decide, parse_requirements
from perfserve.benchmarks.offline.bench import default_specs
from perfserve.benchmarks.robustness.perturbations import training_statistics
from perfserve.benchmarks.robustness.report import load_robustness, write_robustness
from perfserve.benchmarks.robustness.run import RobustnessSummary, run_robustness
from perfserve.cli import main
from perfserve.modelstore.build import build_store
from perfserve_common.usage import UsageError
from service.store import Dataset, Manifest

FACTOR = 1000.0


@pytest.fixture(scope="module")
def summary(store: Path, manifest: Manifest) -> RobustnessSummary:
    return run_robustness(
        store,
        manifest,
        default_specs(store, manifest),
        ["noise", "missing", "shift", "edge"],
        FACTOR,
        [1, 3],
        say=lambda text: None,
    )


def test_noise_and_shift_degrade_every_variant(summary: RobustnessSummary) -> None:
    for variant in ("sklearn_fp32", "onnx_fp32", "onnx_int8"):
        clean = summary.quality_under(variant, "clean")
        noisy = summary.quality_under(variant, "noise:1")
        doubled = summary.quality_under(variant, "shift:x2")
        assert clean and noisy and doubled
        assert noisy.quality.value < clean.quality.value
        assert doubled.quality.value < clean.quality.value - 0.2
        curve = [o.quality.value for o in summary.curve(variant, "noise")]
        assert curve[-1] <= curve[0]  # more noise, no better


def test_every_interval_contains_its_estimate(summary: RobustnessSummary) -> None:
    for o in summary.outcomes:
        for estimate in (o.quality, o.agreement, o.gap):
            assert estimate.low <= estimate.value <= estimate.high, o
    noisy = summary.quality_under("onnx_fp32", "noise:1")
    assert noisy and noisy.quality.low < noisy.quality.high  # a real interval, not a point


def test_the_reference_agrees_with_itself(summary: RobustnessSummary) -> None:
    for o in summary.outcomes:
        if o.variant == summary.reference:
            assert o.agreement.value == 1.0
            assert o.gap.value == 0.0


def test_the_edge_is_refused_just_outside_the_guard_only(summary: RobustnessSummary) -> None:
    inside = summary.quality_under("onnx_fp32", "edge:0.99")
    outside = summary.quality_under("onnx_fp32", "edge:1.01")
    assert inside and outside
    assert inside.refused_share == 0.0
    assert outside.refused_share == 1.0


def test_sensitivity_ranks_every_feature(summary: RobustnessSummary, manifest: Manifest) -> None:
    ranked = [s for s in summary.sensitivity if s.variant == "onnx_fp32"]
    missing = [s for s in ranked if s.perturbation == "missing:one"]
    assert {s.feature for s in missing} == set(manifest.feature_names)
    assert [s.drop for s in missing] == sorted((s.drop for s in missing), reverse=True)


def test_outputs_are_written_and_read_back(summary: RobustnessSummary, tmp_path: Path) -> None:
    paths = write_robustness(summary, tmp_path)
    assert load_robustness(tmp_path) == summary
    assert paths["plot"].stat().st_size > 10_000
    assert paths["csv"].read_text().count("\n") == len(summary.outcomes) + 1
    assert "## Robustness" in paths["report"].read_text()


def test_an_old_store_falls_back_on_the_holdout_with_a_caveat(
    manifest: Manifest, holdout: Dataset
) -> None:
    assert manifest.feature_stats is not None and manifest.feature_stats.source == "training"
    old = manifest.model_copy(update={"feature_stats": None})
    stats = training_statistics(old, holdout)
    assert stats.source == "hold-out"
    assert stats.caveat and "rebuild" in stats.caveat


def test_the_edge_needs_a_range_guard(store: Path, manifest: Manifest) -> None:
    with pytest.raises(UsageError, match="--max-feature-range-factor > 0"):
        run_robustness(store, manifest, default_specs(store, manifest), ["edge"], 0.0, [1])


def _figures(variant: str) -> VariantFigures:
    return VariantFigures(variant, 1, "accuracy", 0.95, 0.1, 0.1, 0.1, 1e4, 1 << 20, 0.1, 1000)


def test_decide_rejects_a_variant_below_a_robustness_floor(summary: RobustnessSummary) -> None:
    noisy = summary.quality_under("onnx_fp32", "noise:0.5")
    assert noisy is not None
    figures = [_figures("onnx_fp32")]
    below = parse_requirements({"robustness": {"noise:0.5": noisy.quality.value + 0.01}})
    above = parse_requirements({"robustness": {"noise:0.5": noisy.quality.value - 0.01}})
    rejected = decide(figures, below, robustness=summary)
    assert rejected.choice is None
    (reason,) = rejected.rejected["onnx_fp32"]
    assert reason.startswith("robustness noise:0.5: accuracy") and "below the minimum" in reason
    assert decide(figures, above, robustness=summary).choice == "onnx_fp32"
    with pytest.raises(UsageError, match="measured: clean, edge"):
        decide(figures, parse_requirements({"robustness": {"noise:0.7": 0.5}}), None, summary)


def test_the_compare_rule_fires_on_a_drop_under_perturbation(summary: RobustnessSummary) -> None:
    table: list[GateRow] = []
    assert drop_reasons(summary, "onnx_fp32", "sklearn_fp32", 0.0, table) == []
    assert any(row["dimension"] == "accuracy noise:0.5" for row in table)
    strict = drop_reasons(summary, "onnx_fp32", "sklearn_fp32", -0.01, [])
    assert strict and "max_robustness_drop -0.01" in strict[0]


def test_an_unknown_perturbation_is_one_line_exit_2(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["robustness", "--store", str(store), "--perturbations", "noise,jitter"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "perfserve robustness: error: --perturbations: unknown ['jitter']; choose from "
        "noise, missing, shift, edge"
    ]


def test_a_regressor_loses_rmse_under_noise_and_is_gated_relatively(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    bunch: Any = load_diabetes()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(float)
    names = [str(name) for name in bunch.feature_names]
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(x[:300], y[:300])
    path = tmp_path_factory.mktemp("regressor") / "store"
    manifest = build_store(path, pipeline, Dataset(x[300:], y[300:], names, "y"), "ridge")
    summary = run_robustness(
        path, manifest, default_specs(path, manifest), ["noise", "shift"], FACTOR, [1]
    )
    assert summary.metric == "rmse" and summary.statistics_source == "hold-out"
    clean = summary.quality_under("onnx_fp32", "clean")
    noisy = summary.quality_under("onnx_fp32", "noise:1")
    assert clean and noisy and noisy.quality.value > clean.quality.value
    assert noisy.quality.low <= noisy.quality.value <= noisy.quality.high
    worse = parse_requirements({"robustness": {"noise:1": clean.quality.value}})
    (reason,) = decide([_figures("onnx_fp32")], worse, robustness=summary).rejected["onnx_fp32"]
    assert "rmse" in reason and "above the maximum" in reason


def test_the_command_writes_every_output(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "robustness"
    args = ["--perturbations", "noise,edge", "--out", str(out)]
    assert main(["robustness", "--store", str(store), *args]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## Robustness") and "| noise:0.5 |" in printed
    names = {path.name for path in out.iterdir()}
    assert names == {
        "robustness.json",
        "robustness.csv",
        "sensitivity.csv",
        "degradation.png",
        "report.md",
    }

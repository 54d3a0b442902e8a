"""The promotion gate as CI uses it: exit 1 on a worse candidate, 0 on an equal one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from perfserve.benchmarks.gate.compare import Rules, load_rules
from perfserve.cli import main
from perfserve.modelstore.build import build_store, reference_data
from perfserve_common.usage import UsageError
from service.store import Dataset

FAST = ["--runs", "6", "--min-block-ms", "5", "--warmup", "2"]


@pytest.fixture(scope="module")
def worse_store(tmp_path_factory: pytest.TempPathFactory, holdout: Dataset) -> Path:
    """A new model version on the same hold-out, trained on shuffled labels: clearly worse."""
    train, _ = reference_data()
    shuffled = np.random.default_rng(0).permutation(train.target)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(train.features, shuffled)
    path = tmp_path_factory.mktemp("worse") / "store"
    build_store(path, pipeline, holdout, model_name="shuffled")
    return path


@pytest.mark.integration
def test_compare_exits_non_zero_on_a_worse_candidate(
    store: Path, worse_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare",
            "--store",
            str(store),
            "--candidate-store",
            str(worse_store),
            "--baseline",
            "sklearn_fp32",
            "--candidate",
            "sklearn_fp32",
            "--out",
            str(tmp_path / "out"),
            "--history",
            str(tmp_path / "history"),
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: REJECT sklearn_fp32@candidate" in out
    assert "accuracy drops" in out and "McNemar" in out
    verdict = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert verdict["promote"] is False and verdict["reasons"]
    assert (tmp_path / "out" / "summary.csv").is_file()
    record = next((tmp_path / "history").glob("*/*/*/*-compare.json"))
    assert json.loads(record.read_text())["accepted"] is False


@pytest.mark.integration
def test_compare_promotes_an_equal_candidate(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare",
            "--store",
            str(store),
            "--baseline",
            "onnx_fp32",
            "--candidate",
            "onnx_fp32",
            "--out",
            str(tmp_path / "out"),
            "--history",
            str(tmp_path / "history"),
            *FAST,
            "--runs",
            "12",  # identical variants: more runs, so noise cannot pass for a slowdown
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: PROMOTE onnx_fp32@candidate" in out


def test_a_rule_file_and_flags_override_the_defaults(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("max_accuracy_drop: 0.02\nmax_latency_increase: 0.2\n")
    loaded = load_rules(rules, {"max_latency_increase": 0.5, "max_size_increase": None})
    assert loaded == Rules(max_accuracy_drop=0.02, max_latency_increase=0.5)
    rules.write_text("max_accuracy_dorp: 0.02\n")
    with pytest.raises(UsageError, match="max_accuracy_dorp"):
        load_rules(rules, {})
    for text in ("max_accuracy_drop: [0.02\n", "max_accuracy_drop: lots\n"):
        rules.write_text(text)
        with pytest.raises(UsageError):
            load_rules(rules, {})


def test_compare_refuses_stores_with_different_holdouts(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, holdout = reference_data()
    other = tmp_path / "other"
    half = Dataset(holdout.features[:50], holdout.target[:50], holdout.feature_names, "target")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        train.features, train.target
    )
    build_store(other, pipeline, half, model_name="half")
    code = main(
        [
            "compare",
            "--store",
            str(store),
            "--candidate-store",
            str(other),
            "--baseline",
            "sklearn_fp32",
            "--candidate",
            "sklearn_fp32",
            *FAST,
        ]
    )
    assert code == 2
    assert "another hold-out" in capsys.readouterr().err

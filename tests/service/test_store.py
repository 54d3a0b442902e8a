"""The model store: three real variants, honest metadata, and clear errors for user models."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from perfserve.modelstore.build import build_from_files, build_store, reference_data
from perfserve.modelstore.convert import INTEGER_OPERATORS
from perfserve.modelstore.examples import EXAMPLES
from perfserve_common.processes import LOAD_FAILED, start_server
from service.quality import quality_metrics
from service.runtimes import open_runner, open_variant
from service.store import (
    Dataset,
    Manifest,
    StoreError,
    load_manifest,
    sha256_of,
    write_csv_dataset,
)
from tests.utils import eventually, eventually_async, poll
from tests.utils.inprocess import started


def test_manifest_describes_every_variant(store: Path, manifest: Manifest) -> None:
    assert list(manifest.variants) == ["sklearn_fp32", "onnx_fp32", "onnx_int8"]
    assert manifest.n_features == 30
    for info in manifest.variants.values():
        artifact = store / info.path
        assert info.file_size_bytes == artifact.stat().st_size
        assert info.sha256 == sha256_of(artifact)
        assert set(info.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
        assert info.model_version == manifest.variants["sklearn_fp32"].model_version
    assert manifest.variants["onnx_int8"].precision == "int8"


def test_int8_graph_really_computes_in_integers(manifest: Manifest) -> None:
    assert INTEGER_OPERATORS & set(manifest.variants["onnx_int8"].operators)
    assert not INTEGER_OPERATORS & set(manifest.variants["onnx_fp32"].operators)


def test_onnx_fp32_agrees_with_sklearn_on_the_whole_holdout(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    reference = open_runner(store / "sklearn_fp32/model.joblib", "sklearn", "classification")
    onnx = open_runner(store / "onnx_fp32/model.onnx", "onnx", "classification")
    expected, actual = reference.predict(holdout.features), onnx.predict(holdout.features)
    assert np.array_equal(expected.labels, actual.labels)
    assert expected.probabilities is not None and actual.probabilities is not None
    np.testing.assert_allclose(actual.probabilities, expected.probabilities, atol=1e-4)
    assert manifest.variants["onnx_fp32"].agreement_with_reference == 1.0


def test_int8_stays_within_one_point_of_accuracy(manifest: Manifest) -> None:
    int8 = manifest.variants["onnx_int8"]
    assert abs(int8.metric_deltas["accuracy"]) <= 0.01
    assert int8.agreement_with_reference >= 0.98


def test_manifest_metrics_are_the_runtimes_own(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    runner = open_runner(store / "onnx_int8/model.onnx", "onnx", "classification")
    prediction = runner.predict(holdout.features)
    scores = quality_metrics(
        "classification", holdout.target, prediction.labels, prediction.probabilities
    )
    assert scores == pytest.approx(manifest.variants["onnx_int8"].metrics)


def test_reference_build_is_deterministic(tmp_path: Path, manifest: Manifest) -> None:
    again = build_store(tmp_path / "again")
    assert again.variants["onnx_fp32"].sha256 == manifest.variants["onnx_fp32"].sha256
    assert again.holdout.sha256 == manifest.holdout.sha256


def _user_files(tmp_path: Path, pipeline: object, holdout: Dataset) -> tuple[Path, Path]:
    model_path, data_path = tmp_path / "pipeline.joblib", tmp_path / "holdout.csv"
    joblib.dump(pipeline, model_path)
    write_csv_dataset(data_path, holdout)
    return model_path, data_path


def test_build_from_a_users_pipeline_and_csv(tmp_path: Path) -> None:
    train, holdout = reference_data()
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0))
    pipeline.fit(train.features, train.target)
    model_path, data_path = _user_files(tmp_path, pipeline, holdout)

    manifest = build_from_files(tmp_path / "store", model_path, data_path, "target")

    assert manifest.model_name == "randomforestclassifier"
    assert set(manifest.variants) == {"sklearn_fp32", "onnx_fp32"}
    assert "MatMul/Gemm/Conv" in manifest.skipped["onnx_int8"]
    assert manifest.variants["onnx_fp32"].agreement_with_reference > 0.98


def test_a_regressor_is_scored_with_regression_metrics(tmp_path: Path) -> None:
    train, holdout = reference_data()
    pipeline = make_pipeline(StandardScaler(), LinearRegression())
    pipeline.fit(train.features, train.features[:, 0])
    target = Dataset(holdout.features, holdout.features[:, 0], holdout.feature_names, "y")
    model_path, data_path = _user_files(tmp_path, pipeline, target)

    manifest = build_from_files(tmp_path / "store", model_path, data_path, "y")

    assert manifest.task == "regression"
    assert manifest.variants["onnx_fp32"].metrics["rmse"] < 1e-2


def test_unconvertible_pipeline_fails_with_a_clear_error(tmp_path: Path) -> None:
    train, holdout = reference_data()
    pipeline = make_pipeline(
        FunctionTransformer(np.log1p), RandomForestClassifier(5, random_state=0)
    )
    pipeline.fit(train.features, train.target)
    model_path, data_path = _user_files(tmp_path, pipeline, holdout)

    with pytest.raises(StoreError, match="cannot convert Pipeline to ONNX"):
        build_from_files(tmp_path / "store", model_path, data_path, "target")
    assert not (tmp_path / "store").exists()


def test_a_file_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    _, holdout = reference_data()
    model_path, data_path = _user_files(tmp_path, {"weights": [1, 2]}, holdout)
    with pytest.raises(StoreError, match="holds a dict, not a fitted estimator"):
        build_from_files(tmp_path / "store", model_path, data_path, "target")


def test_missing_target_column_is_named(tmp_path: Path) -> None:
    train, holdout = reference_data()
    pipeline = make_pipeline(StandardScaler(), LinearRegression()).fit(train.features, train.target)
    model_path, data_path = _user_files(tmp_path, pipeline, holdout)
    with pytest.raises(StoreError, match="column 'label' is not in"):
        build_from_files(tmp_path / "store", model_path, data_path, "label")


def _copy_store(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy


def _edit_manifest(store: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = store / "manifest.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "outside", ["/etc/passwd", "../outside/model.joblib", "sklearn_fp32/../../model.joblib"]
)
def test_a_manifest_path_leading_outside_the_store_is_refused(
    store: Path, tmp_path: Path, outside: str
) -> None:
    copy = _copy_store(store, tmp_path)
    _edit_manifest(copy, lambda m: m["variants"]["sklearn_fp32"].update(path=outside))
    with pytest.raises(StoreError, match="must be relative and stay inside"):
        load_manifest(copy)


def test_a_symbolic_link_leading_outside_the_store_is_refused(store: Path, tmp_path: Path) -> None:
    copy = _copy_store(store, tmp_path)
    elsewhere = tmp_path / "elsewhere.joblib"
    shutil.copyfile(copy / "sklearn_fp32/model.joblib", elsewhere)
    (copy / "sklearn_fp32/model.joblib").unlink()
    (copy / "sklearn_fp32/model.joblib").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="leads outside the store"):
        load_manifest(copy)


@pytest.mark.parametrize("variant", ["sklearn_fp32", "onnx_int8"])
def test_a_tampered_artifact_is_refused_before_it_is_loaded(
    store: Path, tmp_path: Path, variant: str
) -> None:
    copy = _copy_store(store, tmp_path)
    info = load_manifest(copy).variants[variant]
    artifact = copy / info.path
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(StoreError, match="does not match the sha256 in the manifest"):
        open_variant(copy, info, "classification")


def wait_ready_status(url: str, timeout_s: float = 30.0) -> int:
    """/readyz's status once the server listens (it may log before it binds its port)."""

    def status() -> int | None:
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code
        except httpx.TransportError:
            return None

    answered = poll(status, lambda code: code is not None, timeout_s, every_s=0.1)
    assert answered is not None, f"{url} not listening after {timeout_s} s"
    return answered


@pytest.mark.integration
def test_a_server_on_a_tampered_store_never_turns_ready(store: Path, tmp_path: Path) -> None:
    copy = _copy_store(store, tmp_path)
    joblib.dump({"not": "the model"}, copy / "sklearn_fp32/model.joblib")
    server = start_server(copy)
    try:

        def refused() -> bool:
            assert server.process.poll() is None, server.log()
            return "does not match the sha256 in the manifest" in server.log()

        # Start-up alone can take seconds on a loaded machine.
        eventually(refused, 60, every_s=0.1, what=server.log)
        assert wait_ready_status(server.url) == 503
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


async def test_an_app_on_a_tampered_store_says_why_it_is_not_ready(
    store: Path, tmp_path: Path
) -> None:
    copy = _copy_store(store, tmp_path)
    joblib.dump({"not": "the model"}, copy / "sklearn_fp32/model.joblib")
    async with started(copy) as app:
        await eventually_async(lambda: app.service.load_error is not None)
        ready = await app.client.get("/readyz")
        refused = await app.client.post("/predict", json={"instances": [[1.0] * 30]})
    assert ready.status_code == 503
    assert ready.json()["detail"].startswith(LOAD_FAILED)  # what `running_server` stops at
    assert "does not match the sha256 in the manifest" in ready.json()["detail"]
    assert refused.status_code == 503
    assert "does not match the sha256" in refused.json()["detail"]


def test_the_manifest_records_why_it_serves_its_int8_method(manifest: Manifest) -> None:
    choice = manifest.int8
    assert choice is not None and choice.chosen is not None
    chosen = choice.candidates[choice.chosen]
    assert chosen.batch_independent and chosen.within_quality_bounds
    assert choice.reason.startswith(f"{choice.chosen}: fastest batch-independent method")
    assert set(choice.candidates) == {
        "dynamic",
        "dynamic_per_row",
        "static_per_tensor",
        "static_per_channel",
    }
    for candidate in choice.candidates.values():
        assert set(candidate.latency_us) == {1, 8, 64}
    assert manifest.variants["onnx_int8"].sha256 == chosen.sha256


def test_the_store_records_training_statistics(manifest: Manifest) -> None:
    train, _ = reference_data()
    stats = manifest.feature_stats
    assert stats is not None and stats.source == "training"
    assert np.allclose(stats.std, train.features.astype(np.float64).std(axis=0))
    assert np.allclose(stats.median, np.median(train.features, axis=0))


def test_the_wide_example_is_digits_with_a_wide_mlp() -> None:
    train, holdout = reference_data("wide")
    assert train.features.shape[1] == 64 and holdout.features.shape[1] == 64
    assert len(np.unique(train.target)) == 10
    assert EXAMPLES["wide"].hidden_layers[0] >= 512  # matrix products dominate its time

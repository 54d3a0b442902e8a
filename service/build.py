"""`perfserve build`: train (or take) a pipeline, convert and quantize it, and write the store.

The reference model is trained deterministically on scikit-learn's bundled breast-cancer
data (no download): a standard-scaled MLP, whose MatMul layers give onnxruntime's
dynamic quantization real work, unlike a linear model's single ML operator.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import is_classifier
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from service.convert import ConversionError, convert_to_onnx, operator_types, quantize_to_int8
from service.quality import Task, agreement, quality_metrics
from service.runtimes import Prediction, open_runner
from service.store import (
    HOLDOUT_FILE,
    MANIFEST_FILE,
    Dataset,
    HoldoutInfo,
    Manifest,
    StoreError,
    VariantInfo,
    read_csv_dataset,
    sha256_of,
    write_csv_dataset,
)

REFERENCE_MODEL_NAME = "breast-cancer-mlp"
SEED = 0

# (name, format, precision, artifact path); the first is the reference the others must match.
VARIANT_LAYOUT = (
    ("sklearn_fp32", "sklearn", "fp32", "sklearn_fp32/model.joblib"),
    ("onnx_fp32", "onnx", "fp32", "onnx_fp32/model.onnx"),
    ("onnx_int8", "onnx", "int8", "onnx_int8/model.onnx"),
)


def reference_data() -> tuple[Dataset, Dataset]:
    """The bundled data set split 70/30, stratified, with a fixed seed: (train, hold-out)."""
    bunch: Any = load_breast_cancer()
    names = [str(name) for name in bunch.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data.astype(np.float32),
        bunch.target,
        test_size=0.3,
        stratify=bunch.target,
        random_state=SEED,
    )
    return Dataset(x_train, y_train, names, "target"), Dataset(x_test, y_test, names, "target")


def train_reference(train: Dataset) -> Pipeline:
    """A small MLP; trained on float32 rows, so its weights really are fp32."""
    pipeline = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=800, random_state=SEED),
    )
    pipeline.fit(train.features, train.target)
    return pipeline


def build_store(
    store: Path,
    pipeline: Any | None = None,
    holdout: Dataset | None = None,
    model_name: str | None = None,
) -> Manifest:
    """Write every variant that can be made of `pipeline` (default: the reference model).

    The store is assembled in a temporary folder and moved into place at the end, so a
    failed build never leaves a half-written store behind.
    """
    if pipeline is None or holdout is None:
        train, holdout = reference_data()
        pipeline, model_name = train_reference(train), REFERENCE_MODEL_NAME
    task: Task = "classification" if is_classifier(pipeline) else "regression"
    _check_pipeline_accepts(pipeline, holdout)
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=store.parent))
    try:
        skipped = _write_artifacts(staging, pipeline, holdout)
        write_csv_dataset(staging / HOLDOUT_FILE, holdout)
        manifest = _describe(staging, pipeline, holdout, task, model_name, skipped)
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
        if store.exists():
            shutil.rmtree(store)
        staging.rename(store)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def build_from_files(store: Path, model_path: Path, data_path: Path, target: str) -> Manifest:
    """Build from a user's fitted pipeline (joblib) and hold-out CSV."""
    if not model_path.is_file():
        raise StoreError(f"no such model file: {model_path}")
    try:
        pipeline = joblib.load(model_path)
    except Exception as error:
        raise StoreError(f"cannot load {model_path} with joblib: {error}") from error
    if not hasattr(pipeline, "predict"):
        raise StoreError(f"{model_path} holds a {type(pipeline).__name__}, not a fitted estimator")
    holdout = read_csv_dataset(data_path, target)
    name = type(pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline).__name__
    return build_store(store, pipeline, holdout, model_name=name.lower())


def _check_pipeline_accepts(pipeline: Any, holdout: Dataset) -> None:
    try:
        pipeline.predict(holdout.features[:2])
    except Exception as error:
        raise StoreError(
            f"the model cannot predict the hold-out's {holdout.features.shape[1]} feature "
            f"columns: {error}"
        ) from error


def _write_artifacts(staging: Path, pipeline: Any, holdout: Dataset) -> dict[str, str]:
    """Write the three artifacts; return the variants that could not be made, with why."""
    for _, _, _, relative in VARIANT_LAYOUT:
        (staging / relative).parent.mkdir(parents=True)
    joblib.dump(pipeline, staging / VARIANT_LAYOUT[0][3])
    fp32, int8 = staging / VARIANT_LAYOUT[1][3], staging / VARIANT_LAYOUT[2][3]
    try:
        convert_to_onnx(pipeline, holdout.features.shape[1], fp32)
    except ConversionError as error:
        raise StoreError(str(error)) from error
    try:
        quantize_to_int8(fp32, int8)
    except ConversionError as error:
        int8.parent.rmdir()
        return {VARIANT_LAYOUT[2][0]: str(error)}
    return {}


def _describe(
    staging: Path,
    pipeline: Any,
    holdout: Dataset,
    task: Task,
    model_name: str | None,
    skipped: dict[str, str],
) -> Manifest:
    classes = getattr(pipeline, "classes_", None)
    model_version = f"{model_name}-{sha256_of(staging / VARIANT_LAYOUT[1][3])[:12]}"
    built = [layout for layout in VARIANT_LAYOUT if layout[0] not in skipped]
    predictions = {
        name: open_runner(staging / relative, model_format, task).predict(holdout.features)
        for name, model_format, _, relative in built
    }
    metrics = {name: _score(task, holdout, p, classes) for name, p in predictions.items()}
    reference = VARIANT_LAYOUT[0][0]
    variants: dict[str, VariantInfo] = {}
    for name, model_format, precision, relative in built:
        path = staging / relative
        variants[name] = VariantInfo(
            name=name,
            format=model_format,
            precision=precision,
            path=relative,
            file_size_bytes=path.stat().st_size,
            sha256=sha256_of(path),
            model_version=model_version,
            metrics=metrics[name],
            agreement_with_reference=agreement(
                predictions[reference].labels, predictions[name].labels, task
            ),
            metric_deltas={k: v - metrics[reference][k] for k, v in metrics[name].items()},
            operators=(
                operator_types(path)
                if model_format == "onnx"
                else [type(step).__name__ for _, step in getattr(pipeline, "steps", [])]
            ),
        )
    return Manifest(
        model_name=model_name or "model",
        task=task,
        target=holdout.target_name,
        feature_names=holdout.feature_names,
        classes=None if classes is None else np.asarray(classes).tolist(),
        reference=reference,
        holdout=HoldoutInfo(
            path=HOLDOUT_FILE, rows=len(holdout.target), sha256=sha256_of(staging / HOLDOUT_FILE)
        ),
        variants=variants,
        skipped=skipped,
    )


def _score(task: Task, holdout: Dataset, prediction: Prediction, classes: Any) -> dict[str, float]:
    return quality_metrics(
        task, holdout.target, prediction.labels, prediction.probabilities, classes
    )

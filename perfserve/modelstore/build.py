"""`perfserve build`: train (or take) a pipeline, convert and quantize it, and write the store.

The reference model is trained deterministically on data scikit-learn ships (no download;
perfserve/modelstore/examples.py): a standard-scaled MLP, whose MatMul layers give onnxruntime's
quantizers real work, unlike a linear model's single ML operator. Which int8 method ships
is measured, not assumed (perfserve/modelstore/int8.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import is_classifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from perfserve.modelstore import int8
from perfserve.modelstore.convert import (
    ConversionError,
    convert_to_onnx,
    operator_types,
    optimize_offline,
)
from perfserve.modelstore.examples import DEFAULT_EXAMPLE, EXAMPLES
from service import drift
from service.quality import Task, agreement, quality_metrics
from service.runtimes import PerRowRunner, Prediction, open_runner
from service.store import (
    HOLDOUT_FILE,
    MANIFEST_FILE,
    Dataset,
    FeatureRanges,
    FeatureStats,
    HoldoutInfo,
    Int8Choice,
    Manifest,
    StoreError,
    VariantInfo,
    read_csv_dataset,
    sha256_of,
    write_csv_dataset,
)

REFERENCE_MODEL_NAME = EXAMPLES[DEFAULT_EXAMPLE].model_name
SEED = 0

# (name, format, precision, artifact path); the first is the reference the others must match.
VARIANT_LAYOUT = (
    ("sklearn_fp32", "sklearn", "fp32", "sklearn_fp32/model.joblib"),
    ("onnx_fp32", "onnx", "fp32", "onnx_fp32/model.onnx"),
    ("onnx_int8", "onnx", "int8", "onnx_int8/model.onnx"),
)


def reference_data(example: str = DEFAULT_EXAMPLE) -> tuple[Dataset, Dataset]:
    """The example's bundled data set split 70/30, stratified, with a fixed seed:
    (train, hold-out)."""
    bunch: Any = EXAMPLES[example].load()
    names = [str(name) for name in bunch.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data.astype(np.float32),
        bunch.target,
        test_size=0.3,
        stratify=bunch.target,
        random_state=SEED,
    )
    return Dataset(x_train, y_train, names, "target"), Dataset(x_test, y_test, names, "target")


def train_reference(train: Dataset, example: str = DEFAULT_EXAMPLE) -> Pipeline:
    """The example's MLP; trained on float32 rows, so its weights really are fp32."""
    chosen = EXAMPLES[example]
    mlp = MLPClassifier(
        hidden_layer_sizes=chosen.hidden_layers, max_iter=chosen.max_iter, random_state=SEED
    )
    pipeline = make_pipeline(StandardScaler(), mlp)
    pipeline.fit(train.features, train.target)
    return pipeline


def build_store(
    store: Path,
    pipeline: Any | None = None,
    holdout: Dataset | None = None,
    model_name: str | None = None,
    example: str = DEFAULT_EXAMPLE,
) -> Manifest:
    """Write every variant that can be made of `pipeline` (default: the `example` model).

    Static int8 is calibrated, and the feature ranges, statistics and histograms (what
    the service measures drift against) recorded, on the training rows of an example
    model; a user's pipeline comes without them, so its hold-out rows serve (the manifest
    says which).

    The store is assembled in a temporary folder and moved into place at the end, so a
    failed build never leaves a half-written store behind.
    """
    calibration = None
    if pipeline is None or holdout is None:
        train, holdout = reference_data(example)
        pipeline, model_name = train_reference(train, example), EXAMPLES[example].model_name
        calibration = train.features
    learned = holdout.features if calibration is None else calibration
    ranges = _feature_ranges(learned, calibration)
    stats = _feature_stats(learned, calibration)
    histograms = drift.histograms(learned, "hold-out" if calibration is None else "training")
    task: Task = "classification" if is_classifier(pipeline) else "regression"
    _check_pipeline_accepts(pipeline, holdout)
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=store.parent))
    try:
        skipped, methods = _write_artifacts(staging, pipeline, holdout, learned)
        write_csv_dataset(staging / HOLDOUT_FILE, holdout)
        choice = _choose_int8(staging, pipeline, holdout, task, methods, skipped)
        manifest = _describe(staging, pipeline, holdout, task, model_name, skipped, choice)
        manifest.feature_ranges = ranges
        manifest.feature_stats = stats
        manifest.feature_histograms = histograms
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


def _feature_ranges(rows: np.ndarray, training: np.ndarray | None) -> FeatureRanges:
    return FeatureRanges(
        low=rows.min(axis=0).astype(float).tolist(),
        high=rows.max(axis=0).astype(float).tolist(),
        source="hold-out" if training is None else "training",
    )


def _feature_stats(rows: np.ndarray, training: np.ndarray | None) -> FeatureStats:
    values = rows.astype(np.float64)
    return FeatureStats(
        mean=values.mean(axis=0).tolist(),
        std=values.std(axis=0).tolist(),
        median=np.median(values, axis=0).tolist(),
        source="hold-out" if training is None else "training",
    )


def _write_artifacts(
    staging: Path, pipeline: Any, holdout: Dataset, calibration: np.ndarray
) -> tuple[dict[str, str], dict[str, str]]:
    """Write the fp32 artifacts and every int8 method's graph; return the variants that
    could not be made (with why) and the int8 methods written (name to path)."""
    for _, _, _, relative in VARIANT_LAYOUT[:2]:
        (staging / relative).parent.mkdir(parents=True)
    joblib.dump(pipeline, staging / VARIANT_LAYOUT[0][3])
    fp32 = staging / VARIANT_LAYOUT[1][3]
    try:
        convert_to_onnx(pipeline, holdout.features.shape[1], fp32)
    except ConversionError as error:
        raise StoreError(str(error)) from error
    try:
        methods = int8.write_methods(staging, fp32, calibration)
    except ConversionError as error:
        return {VARIANT_LAYOUT[2][0]: str(error)}, {}
    finally:  # quantizers read the plain graph; the served one is optimized offline
        optimize_offline(fp32)
    return {}, methods


def _choose_int8(
    staging: Path,
    pipeline: Any,
    holdout: Dataset,
    task: Task,
    methods: dict[str, str],
    skipped: dict[str, str],
) -> Int8Choice | None:
    """Measure the int8 methods and install the chosen one as `onnx_int8` (or say in
    `skipped` why none qualifies)."""
    if not methods:
        return None
    _, reference_format, _, reference_path = VARIANT_LAYOUT[0]
    reference = PerRowRunner(open_runner(staging / reference_path, reference_format, task))
    fp32 = open_runner(staging / VARIANT_LAYOUT[1][3], "onnx", task)
    classes = getattr(pipeline, "classes_", None)
    choice = int8.choose(
        staging,
        methods,
        task,
        (holdout.features, holdout.target),
        reference.predict(holdout.features),
        fp32,
        None if classes is None else np.asarray(classes),
    )
    if choice.chosen is None:
        skipped[VARIANT_LAYOUT[2][0]] = choice.reason
    else:
        int8.install_choice(staging, choice, VARIANT_LAYOUT[2][3])
    return choice


def _describe(
    staging: Path,
    pipeline: Any,
    holdout: Dataset,
    task: Task,
    model_name: str | None,
    skipped: dict[str, str],
    choice: Int8Choice | None,
) -> Manifest:
    """Every variant's record, scored on the hold-out row by row, as single-row requests
    are served (for batch-independent variants the same as in any batch)."""
    classes = getattr(pipeline, "classes_", None)
    model_version = f"{model_name}-{sha256_of(staging / VARIANT_LAYOUT[1][3])[:12]}"
    built = [layout for layout in VARIANT_LAYOUT if layout[0] not in skipped]
    method = choice.candidates[choice.chosen] if choice and choice.chosen else None
    per_row = {VARIANT_LAYOUT[2][0]: method is not None and method.per_row}
    predictions = {
        name: PerRowRunner(open_runner(staging / relative, model_format, task)).predict(
            holdout.features
        )
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
            method=method.method if method and precision == "int8" else None,
            per_row=per_row.get(name, False),
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
        int8=choice,
    )


def _score(task: Task, holdout: Dataset, prediction: Prediction, classes: Any) -> dict[str, float]:
    return quality_metrics(
        task, holdout.target, prediction.labels, prediction.probabilities, classes
    )

"""The model store on disk: a manifest, one folder per variant, and the fixed hold-out set.

model_store/
  manifest.json          what each variant is, its checksum, size and hold-out quality
  holdout.csv            the fixed hold-out rows (features + target) every tool scores on
  sklearn_fp32/model.joblib
  onnx_fp32/model.onnx
  onnx_int8/model.onnx   the int8 method `perfserve build` chose to serve
  int8_methods/*.onnx    every int8 method it measured, for the bench

A store is code: loading `model.joblib` runs pickle, and an ONNX graph decides what the
service answers. So every path the manifest names must stay inside the store, and every
artifact must match the sha256 the manifest recorded before anything loads it.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from pydantic import BaseModel

from service.quality import Task

MANIFEST_FILE = "manifest.json"
HOLDOUT_FILE = "holdout.csv"


class StoreError(Exception):
    """The store or a user-supplied model cannot be used; the message says what to do."""


class VariantInfo(BaseModel):
    """One servable form of the model, as recorded at build time."""

    name: str
    format: str
    """"sklearn" (joblib pipeline) or "onnx"."""
    precision: str
    """"fp32" or "int8" (weights)."""
    path: str
    """Artifact path relative to the store."""
    file_size_bytes: int
    sha256: str
    model_version: str
    metrics: dict[str, float]
    """Quality on the hold-out set, computed by the serving runtime itself."""
    agreement_with_reference: float
    """Share of hold-out rows where this variant answers like the reference variant."""
    metric_deltas: dict[str, float]
    """This variant's metrics minus the reference variant's."""
    operators: list[str]
    """ONNX operator types, or the pipeline's step classes for scikit-learn."""
    method: str | None = None
    """How an int8 variant was quantized (see `Int8Choice`); None for fp32."""
    per_row: bool = False
    """Run one row per model call, so that no row's answer depends on its batch-mates."""


class HoldoutInfo(BaseModel):
    path: str
    rows: int
    sha256: str


class FeatureRanges(BaseModel):
    """Per-feature minimum and maximum of the rows the model learned from; the service may
    refuse values far outside them (`max_feature_range_factor`)."""

    low: list[float]
    high: list[float]
    source: str
    """"training" rows, or "hold-out" when the build had no training rows (a user's model)."""


class FeatureStats(BaseModel):
    """Per-feature mean, standard deviation and median of the rows the model learned from:
    what a robustness run scales its noise and shifts by, and fills a missing value with
    (as a client would). Stores built before it was recorded have none; the robustness
    run then computes them from the hold-out and says so."""

    mean: list[float]
    std: list[float]
    median: list[float]
    source: str
    """"training" rows, or "hold-out" when the build had no training rows (a user's model)."""


class FeatureHistograms(BaseModel):
    """Per feature, the training rows' histogram the service measures drift against
    (service/drift.py): inner bin edges at the deciles (fewer when values repeat) and the
    share of rows in each of the `len(edges) + 1` bins. Stores built before it was
    recorded have none; the service then watches no drift and says so."""

    edges: list[list[float]]
    proportions: list[list[float]]
    source: str
    """"training" rows, or "hold-out" when the build had no training rows (a user's model)."""


class Int8Candidate(BaseModel):
    """One int8 method as `perfserve build` measured it."""

    method: str
    path: str
    sha256: str
    per_row: bool
    metrics: dict[str, float]
    """Hold-out quality, each row predicted alone (as a single-row request is served)."""
    agreement_with_reference: float
    max_batch_deviation: float
    """Largest change of a hold-out row's output between alone and inside mixed batches
    with outlier batch-mates (rows that kept their label and stayed finite)."""
    batch_changed_rows: int
    """Hold-out rows whose label changed, or that turned NaN, inside those batches."""
    batch_independent: bool
    within_quality_bounds: bool
    latency_us: dict[int, float]
    """Median microseconds per call at each batch size, interleaved with the others."""


class Int8Choice(BaseModel):
    """Which int8 method ships as `onnx_int8`, and why."""

    chosen: str | None
    reason: str
    fp32_latency_us: dict[int, float]
    """onnx_fp32 measured in the same interleaved rounds, for scale."""
    candidates: dict[str, Int8Candidate]


class Manifest(BaseModel):
    """Everything a server, benchmark or load test needs to know about the store."""

    schema_version: int = 2
    model_name: str
    task: Task
    target: str
    feature_names: list[str]
    classes: list[int | float | str] | None
    reference: str
    holdout: HoldoutInfo
    variants: dict[str, VariantInfo]
    skipped: dict[str, str] = {}
    """Variants that could not be built for this model, with the reason."""
    feature_ranges: FeatureRanges | None = None
    feature_stats: FeatureStats | None = None
    feature_histograms: FeatureHistograms | None = None
    int8: Int8Choice | None = None
    """The int8 methods measured at build time and the one chosen, or None (no int8)."""

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


@dataclass(frozen=True)
class Dataset:
    """Rows as a float32 matrix, their targets, and the column names."""

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    target_name: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(store: Path) -> Manifest:
    """Read the manifest, with an error that says how to create a missing store.

    Every path it names is checked to stay inside the store here, before any is opened.
    """
    path = store / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"no model store at {store} (missing {MANIFEST_FILE}); run `perfserve build`"
        ) from None
    except OSError as error:  # unreadable by this user, a folder in its place, ...
        raise StoreError(f"cannot read the model store's {path}: {error.strerror}") from None
    manifest = Manifest.model_validate_json(data)
    named = [manifest.holdout.path, *(info.path for info in manifest.variants.values())]
    if manifest.int8 is not None:
        named += [candidate.path for candidate in manifest.int8.candidates.values()]
    for relative in named:
        inside_store(store, relative)
    return manifest


def inside_store(store: Path, relative: str) -> Path:
    """`store / relative`, refused unless it is a relative path that stays in the store
    (no absolute path, no `..`, no symbolic link leading out)."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or Path(relative).is_absolute() or ".." in pure.parts or not relative:
        raise StoreError(
            f"the manifest names {relative!r}; store paths must be relative and stay inside "
            f"{store} (no absolute paths, no '..')"
        )
    path = store / relative
    root = store.resolve()
    if not path.resolve().is_relative_to(root):
        raise StoreError(f"{path} leads outside the store {root} (a symbolic link?); refusing it")
    return path


def read_verified(store: Path, relative: str, sha256: str) -> bytes:
    """The bytes of a store file, after checking them against the manifest's sha256.

    Loading from these bytes, not from the path again, leaves no window in which the
    file could be swapped between the check and the load.
    """
    path = inside_store(store, relative)
    if not path.is_file():
        raise StoreError(f"{path} is missing; rebuild the store with `perfserve build`")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise StoreError(
            f"{path} does not match the sha256 in the manifest (recorded {sha256[:12]}…, found "
            f"{actual[:12]}…): the file changed after `perfserve build`; refusing to load it"
        )
    return data


def load_holdout(store: Path, manifest: Manifest | None = None) -> Dataset:
    manifest = manifest or load_manifest(store)
    read_verified(store, manifest.holdout.path, manifest.holdout.sha256)
    return read_csv_dataset(store / manifest.holdout.path, manifest.target)


def write_csv_dataset(path: Path, dataset: Dataset) -> None:
    """Write features with float32 round-trip precision, then the target column."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*dataset.feature_names, dataset.target_name])
        for row, target in zip(dataset.features, dataset.target, strict=True):
            writer.writerow([*(format(float(v), ".9g") for v in row), _plain(target)])


def read_csv_dataset(path: Path, target: str) -> Dataset:
    """Read a CSV with a header; every column but `target` must be numeric."""
    if not path.is_file():
        raise StoreError(f"no such data file: {path}")
    with path.open(newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise StoreError(f"{path} is empty")
        if target not in header:
            raise StoreError(f"column {target!r} is not in {path}; columns are {header}")
        target_index = header.index(target)
        names = [name for i, name in enumerate(header) if i != target_index]
        features, targets = [], []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise StoreError(
                    f"{path}:{line} has {len(row)} fields, the header has {len(header)}"
                )
            targets.append(row[target_index])
            try:
                features.append([float(v) for i, v in enumerate(row) if i != target_index])
            except ValueError as error:
                raise StoreError(f"{path}:{line}: a feature is not a number ({error})") from None
    if not features:
        raise StoreError(f"{path} has a header but no rows")
    return Dataset(np.asarray(features, dtype=np.float32), _parse_targets(targets), names, target)


def _parse_targets(values: list[str]) -> np.ndarray:
    for kind in (int, float):
        try:
            return np.asarray([kind(v) for v in values])
        except ValueError:
            continue
    return np.asarray(values)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value

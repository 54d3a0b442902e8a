"""The model store on disk: a manifest, one folder per variant, and the fixed hold-out set.

model_store/
  manifest.json          what each variant is, its checksum, size and hold-out quality
  holdout.csv            the fixed hold-out rows (features + target) every tool scores on
  sklearn_fp32/model.joblib
  onnx_fp32/model.onnx
  onnx_int8/model.onnx
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

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


class HoldoutInfo(BaseModel):
    path: str
    rows: int
    sha256: str


class Manifest(BaseModel):
    """Everything a server, benchmark or load test needs to know about the store."""

    schema_version: int = 1
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
    """Read the manifest, with an error that says how to create a missing store."""
    path = store / MANIFEST_FILE
    if not path.is_file():
        raise StoreError(
            f"no model store at {store} (missing {MANIFEST_FILE}); run `perfserve build`"
        )
    return Manifest.model_validate_json(path.read_bytes())


def load_holdout(store: Path, manifest: Manifest | None = None) -> Dataset:
    manifest = manifest or load_manifest(store)
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

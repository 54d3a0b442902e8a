"""A dataset file of any size drawn from the model's data, written chunk by chunk (memory
stays flat): hold-out rows resampled with replacement, each feature jittered by Gaussian
noise of 5% of its training std, the target kept. Nothing is downloaded, and the target
still fits the rows, so the quality a pass reports means something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from perfserve.benchmarks.robustness.perturbations import training_statistics
from service.store import Manifest, load_holdout

JITTER_STD = 0.05
WRITE_ROWS = 250_000


def generate(store: Path, manifest: Manifest, rows: int, path: Path, seed: int = 0) -> None:
    holdout = load_holdout(store, manifest)
    stats = training_statistics(manifest, holdout)
    rng = np.random.default_rng(seed)
    names = [*manifest.feature_names, manifest.target]
    schema = pa.schema(
        [
            *(pa.field(name, pa.float32()) for name in manifest.feature_names),
            pa.field(manifest.target, pa.from_numpy_dtype(holdout.target.dtype)),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | pa_csv.CSVWriter
    if path.suffix.lower() in (".parquet", ".pq"):
        writer = pq.ParquetWriter(path, schema)
    else:
        writer = pa_csv.CSVWriter(path, schema)
    with writer:
        for start in range(0, rows, WRITE_ROWS):
            size = min(WRITE_ROWS, rows - start)
            picked = rng.integers(0, len(holdout.target), size=size)
            noise = rng.normal(size=(size, len(stats.std))) * (JITTER_STD * stats.std)
            features = (holdout.features[picked] + noise).astype(np.float32)
            columns = [pa.array(features[:, j]) for j in range(features.shape[1])]
            columns.append(pa.array(holdout.target[picked]))
            writer.write_batch(pa.RecordBatch.from_arrays(columns, names=names))

"""Choose how `onnx_int8` is quantized: measure every int8 method at build time and ship the
fastest one that keeps each row's answer independent of its batch-mates and its quality
within bounds of the reference.

Why batch independence is a hard requirement: the batcher merges concurrent requests into
one model call. Dynamic quantization takes each activation's scale from the whole batch,
so one client's outlier row (a unit mistake, a 1e30) changes, or turns to NaN, the answers
of every other request in its batch. A method that does not is preferred even if slower.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from perfserve.modelstore.convert import (
    ConversionError,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from service.quality import Task, agreement, quality_metrics
from service.runtimes import PerRowRunner, Prediction, Runner, open_runner
from service.store import Int8Candidate, Int8Choice, sha256_of

METHODS_FOLDER = "int8_methods"
MAX_ACCURACY_DROP = 0.01
MIN_AGREEMENT = 0.98
BATCH_TOLERANCE = 1e-6
"""Largest output change with batch-mates that still counts as independent (float32)."""
TIMING_BATCH_SIZES = (1, 8, 64)
TIMING_ROUNDS = 15
CALLS_PER_BLOCK = 20
MIXED_BATCH_ROWS = 16


def write_methods(staging: Path, fp32_path: Path, calibration: np.ndarray) -> dict[str, str]:
    """Write each quantized graph under `int8_methods/`; method name to relative path.

    Raises ConversionError when no method can quantize the graph (e.g. tree ensembles).
    """
    folder = staging / METHODS_FOLDER
    folder.mkdir()
    written: dict[str, str] = {}
    errors: list[str] = []
    for method in ("dynamic", "static_per_tensor", "static_per_channel"):
        relative = f"{METHODS_FOLDER}/{method}.onnx"
        try:
            if method == "dynamic":
                quantize_dynamic_int8(fp32_path, staging / relative)
            else:
                per_channel = method == "static_per_channel"
                quantize_static_int8(fp32_path, staging / relative, calibration, per_channel)
        except ConversionError as error:
            errors.append(str(error))
            continue
        written[method] = relative
    if "dynamic" in written:  # the same graph, one row per call: independent by construction
        written["dynamic_per_row"] = written["dynamic"]
    if not written:
        folder.rmdir()
        raise ConversionError(errors[0])
    return written


def choose(
    staging: Path,
    methods: dict[str, str],
    task: Task,
    holdout: tuple[np.ndarray, np.ndarray],
    reference: Prediction,
    fp32: Runner,
    classes: np.ndarray | None,
) -> Int8Choice:
    """Measure every method (quality row by row, batch independence, speed per batch size,
    interleaved with onnx_fp32) and pick the one to serve, with the reason."""
    features, target = holdout
    runners: dict[str, Runner] = {
        method: open_runner(staging / relative, "onnx", task, per_row=method.endswith("_per_row"))
        for method, relative in methods.items()
    }
    latency = _interleaved_latency({**runners, "onnx_fp32": fp32}, features)
    reference_metrics = quality_metrics(
        task, target, reference.labels, reference.probabilities, classes
    )
    candidates = {}
    for method, runner in runners.items():
        served = PerRowRunner(runner).predict(features)
        metrics = quality_metrics(task, target, served.labels, served.probabilities, classes)
        agrees = agreement(reference.labels, served.labels, task)
        deviation, changed = mixed_batch_deviation(runner, features)
        candidates[method] = Int8Candidate(
            method=method,
            path=methods[method],
            sha256=sha256_of(staging / methods[method]),
            per_row=method.endswith("_per_row"),
            metrics=metrics,
            agreement_with_reference=agrees,
            max_batch_deviation=deviation,
            batch_changed_rows=changed,
            batch_independent=deviation <= BATCH_TOLERANCE and changed == 0,
            within_quality_bounds=_within_bounds(task, metrics, reference_metrics, agrees),
            latency_us=latency[method],
        )
    chosen, reason = _pick(candidates, latency["onnx_fp32"])
    return Int8Choice(
        chosen=chosen, reason=reason, fp32_latency_us=latency["onnx_fp32"], candidates=candidates
    )


def install_choice(staging: Path, choice: Int8Choice, served_path: str) -> None:
    """Copy the chosen method's graph to where the `onnx_int8` variant is served from."""
    assert choice.chosen is not None
    target = staging / served_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staging / choice.candidates[choice.chosen].path, target)


def outlier_rows(features: np.ndarray) -> np.ndarray:
    """Batch-mates a careless or hostile client might send: a unit mistake (x100), a row of
    1000s, and a row of 1e30 (finite in float32)."""
    width = features.shape[1]
    return np.vstack(
        [features[:1] * 100, np.full((1, width), 1e3), np.full((1, width), 1e30)]
    ).astype(np.float32)


def mixed_batch_deviation(runner: Runner, features: np.ndarray) -> tuple[float, int]:
    """How much rows' answers change between their own call and a call shared with other
    rows and the outliers: the largest change of a probability (a regressor's value) among
    rows whose answer stays finite, and the number of rows whose label or finiteness
    changed."""
    alone = [runner.predict(features[i : i + 1]) for i in range(len(features))]
    outliers = outlier_rows(features)
    worst, changed = 0.0, 0
    for start in range(0, len(features), MIXED_BATCH_ROWS):
        count = len(features[start : start + MIXED_BATCH_ROWS])
        batch = [outliers[:2], features[start : start + count], outliers[2:]]
        mixed = runner.predict(np.vstack(batch))
        own = alone[start : start + count]
        own_values, mixed_values = _values(own), _values([mixed])[2:-1]
        flipped = np.concatenate([p.labels for p in own]) != mixed.labels[2:-1]
        flipped |= (np.isfinite(own_values) != np.isfinite(mixed_values)).any(axis=1)
        changed += int(np.count_nonzero(flipped))
        steady = ~flipped
        difference = np.abs(own_values[steady] - mixed_values[steady])
        worst = max(worst, float(np.nanmax(difference, initial=0.0)))
    return worst, changed


def _values(predictions: list[Prediction]) -> np.ndarray:
    """Probabilities of a classifier, values of a regressor, as float64 rows."""
    parts = [
        p.labels.reshape(-1, 1) if p.probabilities is None else p.probabilities for p in predictions
    ]
    return np.vstack(parts).astype(np.float64)


def _within_bounds(
    task: Task, metrics: dict[str, float], reference: dict[str, float], agrees: float
) -> bool:
    if agrees < MIN_AGREEMENT:
        return False
    if task == "classification":
        return reference["accuracy"] - metrics["accuracy"] <= MAX_ACCURACY_DROP
    return True


def _interleaved_latency(
    runners: dict[str, Runner], features: np.ndarray
) -> dict[str, dict[int, float]]:
    """Median µs per call per batch size; every round visits every runner, so load on a
    shared machine hits them alike."""
    batches = {size: np.resize(features, (size, features.shape[1])) for size in TIMING_BATCH_SIZES}
    samples: dict[tuple[str, int], list[float]] = {}
    for runner in runners.values():
        for rows in batches.values():
            runner.predict(rows)
    for _ in range(TIMING_ROUNDS):
        for name, runner in runners.items():
            for size, rows in batches.items():
                started = time.perf_counter()
                for _ in range(CALLS_PER_BLOCK):
                    runner.predict(rows)
                elapsed = (time.perf_counter() - started) / CALLS_PER_BLOCK
                samples.setdefault((name, size), []).append(elapsed * 1e6)
    return {
        name: {size: round(float(np.median(samples[name, size])), 2) for size in batches}
        for name in runners
    }


def _pick(candidates: dict[str, Int8Candidate], fp32: dict[int, float]) -> tuple[str | None, str]:
    """The fastest eligible method by geometric mean of latency over the batch sizes."""
    excluded = []
    for method, candidate in candidates.items():
        if not candidate.batch_independent:
            excluded.append(
                f"{method} excluded: answers depend on batch-mates (with outlier rows in the "
                f"batch, {candidate.batch_changed_rows} of the hold-out rows changed label or "
                f"turned NaN, probabilities moved by up to {candidate.max_batch_deviation:.3g})"
            )
        elif not candidate.within_quality_bounds:
            excluded.append(
                f"{method} excluded: quality outside bounds (agreement "
                f"{candidate.agreement_with_reference:.3f}, min {MIN_AGREEMENT}; "
                f"accuracy drop at most {MAX_ACCURACY_DROP})"
            )
    eligible = {
        method: _geometric_mean(candidate.latency_us)
        for method, candidate in candidates.items()
        if candidate.batch_independent and candidate.within_quality_bounds
    }
    if not eligible:
        return None, "no int8 method is batch-independent within quality bounds: " + "; ".join(
            excluded
        )
    chosen = min(eligible, key=eligible.__getitem__)
    sizes = ", ".join(str(size) for size in TIMING_BATCH_SIZES)
    per_size = ", ".join(
        f"batch {size}: {candidates[chosen].latency_us[size]:.1f} µs (onnx_fp32 {fp32[size]:.1f})"
        for size in TIMING_BATCH_SIZES
    )
    others = ", ".join(f"{m} {v:.1f} µs" for m, v in sorted(eligible.items()) if m != chosen)
    reason = (
        f"{chosen}: fastest batch-independent method within quality bounds (geometric mean "
        f"over batch sizes {sizes}: {eligible[chosen]:.1f} µs"
        + (f"; {others}" if others else "")
        + f"); {per_size}"
    )
    return chosen, "; ".join([reason, *excluded])


def _geometric_mean(latency: dict[int, float]) -> float:
    return float(np.exp(np.mean(np.log(list(latency.values())))))

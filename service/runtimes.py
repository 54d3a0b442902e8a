"""Model runners: scikit-learn and onnxruntime behind one small interface.

A runner is synchronous and owns no threads of its own beyond what it is given:
the batcher decides where and when it runs, so the service can keep the event
loop free while a model computes.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import onnxruntime as ort
import sklearn

from service.quality import Task
from service.store import VariantInfo, read_verified


@dataclass(frozen=True, slots=True)
class Prediction:
    """Answers for a batch of rows: labels (or values) and class probabilities if any."""

    labels: np.ndarray
    probabilities: np.ndarray | None


class Runner(Protocol):
    """What the batcher needs of a model: one call from rows to answers."""

    def predict(self, rows: np.ndarray) -> Prediction: ...


class SklearnRunner:
    """A fitted scikit-learn pipeline, loaded from joblib (which runs pickle: load only
    verified bytes, see `open_variant`)."""

    def __init__(self, source: Path | bytes, task: Task) -> None:
        self.model: Any = joblib.load(io.BytesIO(source) if isinstance(source, bytes) else source)
        self.task = task
        self.classes: np.ndarray | None = getattr(self.model, "classes_", None)

    def predict(self, rows: np.ndarray) -> Prediction:
        # Rows are validated as finite before they get here; skipping the check again
        # saves a pass over the data on every call.
        with sklearn.config_context(assume_finite=True):
            if self.task == "regression" or self.classes is None:
                return Prediction(np.asarray(self.model.predict(rows)).ravel(), None)
            probabilities = np.asarray(self.model.predict_proba(rows), dtype=np.float32)
        return Prediction(self.classes[probabilities.argmax(axis=1)], probabilities)


class OnnxRunner:
    """An ONNX graph in onnxruntime, with thread pools sized by the caller.

    Set for serving one call at a time per model: `threads` 1 runs every operator on the
    calling thread (no pool to wake); with more, pool threads sleep instead of spinning
    between calls, since the server's event loop needs that CPU. The graph was optimized
    offline at build time; the CPU-specific optimizations run here, at load.
    """

    def __init__(self, source: Path | bytes, task: Task, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = source if isinstance(source, bytes) else str(source)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.task = task

    def predict(self, rows: np.ndarray) -> Prediction:
        outputs = self.session.run(None, {self.input_name: rows})
        if self.task == "regression":
            return Prediction(np.asarray(outputs[0]).ravel(), None)
        return Prediction(np.asarray(outputs[0]).ravel(), np.asarray(outputs[1]))


class PerRowRunner:
    """One model call per row: for a runtime whose answers depend on the batch (dynamic
    quantization), this makes each row's answer its own, at the cost of batching's gain."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner

    def predict(self, rows: np.ndarray) -> Prediction:
        if len(rows) == 1:
            return self.inner.predict(rows)
        parts = [self.inner.predict(rows[i : i + 1]) for i in range(len(rows))]
        labels = np.concatenate([part.labels for part in parts])
        if parts[0].probabilities is None:
            return Prediction(labels, None)
        probabilities = [p.probabilities for p in parts if p.probabilities is not None]
        return Prediction(labels, np.concatenate(probabilities))


class SlowedRunner:
    """Fault injection: a runner whose every call takes `delay_s` longer, holding the runner
    busy as a heavier model would (with `--inference inline`, the event loop too)."""

    def __init__(self, inner: Runner, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def predict(self, rows: np.ndarray) -> Prediction:
        time.sleep(self.delay_s)
        return self.inner.predict(rows)


def open_runner(
    source: Path | bytes, model_format: str, task: Task, threads: int = 1, per_row: bool = False
) -> Runner:
    """Load a model file (or its bytes) into the runtime its format needs."""
    runner: Runner
    if model_format == "sklearn":
        runner = SklearnRunner(source, task)
    elif model_format == "onnx":
        runner = OnnxRunner(source, task, threads)
    else:
        raise ValueError(f"unknown model format {model_format!r}")
    return PerRowRunner(runner) if per_row else runner


def open_variant(store: Path, info: VariantInfo, task: Task, threads: int = 1) -> Runner:
    """Load a stored variant from bytes checked against the manifest's sha256 (a store is
    code: a swapped file must not run)."""
    data = read_verified(store, info.path, info.sha256)
    return open_runner(data, info.format, task, threads, info.per_row)

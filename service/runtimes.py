"""Model runners: scikit-learn and onnxruntime behind one small interface.

A runner is synchronous and owns no threads of its own beyond what it is given:
the batcher decides where and when it runs, so the service can keep the event
loop free while a model computes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import onnxruntime as ort
import sklearn

from service.quality import Task


@dataclass(frozen=True, slots=True)
class Prediction:
    """Answers for a batch of rows: labels (or values) and class probabilities if any."""

    labels: np.ndarray
    probabilities: np.ndarray | None


class Runner(Protocol):
    """What the batcher needs of a model: one call from rows to answers."""

    def predict(self, rows: np.ndarray) -> Prediction: ...


class SklearnRunner:
    """A fitted scikit-learn pipeline, loaded from joblib."""

    def __init__(self, path: Path, task: Task) -> None:
        self.model: Any = joblib.load(path)
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
    """An ONNX graph in onnxruntime, with thread pools sized by the caller."""

    def __init__(self, path: Path, task: Task, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.task = task

    def predict(self, rows: np.ndarray) -> Prediction:
        outputs = self.session.run(None, {self.input_name: rows})
        if self.task == "regression":
            return Prediction(np.asarray(outputs[0]).ravel(), None)
        return Prediction(np.asarray(outputs[0]).ravel(), np.asarray(outputs[1]))


class SlowedRunner:
    """Fault injection: a runner whose every call takes `delay_s` longer, holding the runner
    busy as a heavier model would (with `--inference inline`, the event loop too)."""

    def __init__(self, inner: Runner, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def predict(self, rows: np.ndarray) -> Prediction:
        time.sleep(self.delay_s)
        return self.inner.predict(rows)


def open_runner(path: Path, model_format: str, task: Task, threads: int = 1) -> Runner:
    """Load a stored variant into the runtime its format needs."""
    if model_format == "sklearn":
        return SklearnRunner(path, task)
    if model_format == "onnx":
        return OnnxRunner(path, task, threads)
    raise ValueError(f"unknown model format {model_format!r}")

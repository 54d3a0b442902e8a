"""Where a call's time goes: preprocess, model operators, postprocess.

ONNX variants are read from onnxruntime's own profiler, node by node, on the graph as
optimized for this machine (fusions included). Each node is put in a stage by its place
in the graph: the leading preprocessing operators (what the scikit-learn transformers
became), the nodes that compute the scores, and the nodes that only decode labels from
them. Time the session spends outside any kernel (input binding, output copies) is its
own stage, "runtime". scikit-learn variants are timed step by step through the pipeline.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import sklearn

from service.quality import Task

STAGES = ("preprocess", "model", "postprocess", "runtime")
# Operators that scikit-learn's transformers become in ONNX (plus the casts around them).
PREPROCESS_OPERATORS = frozenset(
    {
        "Cast",
        "Scaler",
        "Normalizer",
        "Imputer",
        "Binarizer",
        "OneHotEncoder",
        "FeatureVectorizer",
        "LabelEncoder",
        "Identity",
    }
)


@dataclass(frozen=True)
class Breakdown:
    """Mean seconds per call as profiled, by stage and by "stage/operator" (or pipeline step).

    Profiling adds its own cost to every node, so read the absolute figures as an upper
    bound and the shares as the answer.
    """

    stages: dict[str, float]
    operators: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.stages.values())

    def shares(self) -> dict[str, float]:
        total = self.total
        return {
            stage: (seconds / total if total else 0.0) for stage, seconds in self.stages.items()
        }


def breakdown(
    path: Path, model_format: str, task: Task, rows: np.ndarray, calls: int, threads: int
) -> Breakdown:
    """Time `calls` calls on `rows` (after one untimed warm-up call), split by stage."""
    if model_format == "onnx":
        return onnx_breakdown(path, task, rows, calls, threads)
    return sklearn_breakdown(path, task, rows, calls)


def onnx_breakdown(path: Path, task: Task, rows: np.ndarray, calls: int, threads: int) -> Breakdown:
    with tempfile.TemporaryDirectory(prefix="perfserve-profile-") as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # the optimized-model dump warns about portability
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {session.get_inputs()[0].name: rows}
        for _ in range(calls + 1):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        graph = onnx.load(options.optimized_model_filepath).graph
    stage_of = classify_nodes(graph, task)
    return _from_profile(events, stage_of, {node.name: node.op_type for node in graph.node}, calls)


def classify_nodes(graph: Any, task: Task) -> dict[str, str]:
    """Stage of every node: a leading run of preprocessing operators, then the ancestors of
    the score output (the last output: probabilities, or the value of a regressor), and
    everything else (label decoding) as postprocess."""
    nodes = list(graph.node)
    producer = {output: node for node in nodes for output in node.output}
    score_output = graph.output[-1 if task == "classification" else 0].name
    ancestors: set[str] = set()
    pending = [score_output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in ancestors:
            continue
        ancestors.add(node.name)
        pending.extend(node.input)
    stages: dict[str, str] = {}
    leading = True
    for node in nodes:
        leading = leading and node.op_type in PREPROCESS_OPERATORS
        if leading:
            stages[node.name] = "preprocess"
        else:
            stages[node.name] = "model" if node.name in ancestors else "postprocess"
    return stages


def _from_profile(
    events: list[dict[str, Any]], stage_of: dict[str, str], op_type: dict[str, str], calls: int
) -> Breakdown:
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    kept = runs[-calls:]  # the first run is the warm-up
    start = kept[0]["ts"]
    stages = dict.fromkeys(STAGES, 0.0)
    operators: dict[str, float] = defaultdict(float)
    kernel_total = 0.0
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or event["ts"] < start:
            continue
        node = name.removesuffix("_kernel_time")
        seconds = event["dur"] / 1e6 / calls
        stage = stage_of.get(node, "model")
        stages[stage] += seconds
        operators[f"{stage}/{op_type.get(node, node)}"] += seconds
        kernel_total += seconds
    run_total = sum(run["dur"] for run in kept) / 1e6 / calls
    stages["runtime"] = max(0.0, run_total - kernel_total)
    return Breakdown(stages, dict(operators))


def sklearn_breakdown(path: Path, task: Task, rows: np.ndarray, calls: int) -> Breakdown:
    """Each transformer of the pipeline, the final estimator, and decoding of labels."""
    model: Any = joblib.load(path)
    steps = list(model.steps) if hasattr(model, "steps") else [("model", model)]
    classes = getattr(model, "classes_", None)
    operators: dict[str, float] = defaultdict(float)
    stage_of = {_step_label(s): "preprocess" for s in steps[:-1]}
    stage_of[_step_label(steps[-1])] = "model"
    stage_of["argmax -> classes"] = "postprocess"
    with sklearn.config_context(assume_finite=True):
        for call in range(calls + 1):
            timed = _sklearn_call(steps, task, classes, rows)
            if call == 0:
                continue  # warm-up
            for label, seconds in timed.items():
                operators[f"{stage_of[label]}/{label}"] += seconds / calls
    stages = dict.fromkeys(STAGES, 0.0)
    for label, seconds in operators.items():
        stages[label.split("/", 1)[0]] += seconds
    return Breakdown(stages, dict(operators))


def _sklearn_call(
    steps: list[tuple[str, Any]], task: Task, classes: np.ndarray | None, rows: np.ndarray
) -> dict[str, float]:
    """One prediction the way the service's runner makes it, with a clock on every step."""
    timed: dict[str, float] = {}
    features = rows
    for step in steps[:-1]:
        started = time.perf_counter()
        features = step[1].transform(features)
        timed[_step_label(step)] = time.perf_counter() - started
    estimator = steps[-1][1]
    started = time.perf_counter()
    if task == "regression" or classes is None:
        estimator.predict(features)
        timed[_step_label(steps[-1])] = time.perf_counter() - started
        return timed
    probabilities = np.asarray(estimator.predict_proba(features), dtype=np.float32)
    timed[_step_label(steps[-1])] = time.perf_counter() - started
    started = time.perf_counter()
    classes[probabilities.argmax(axis=1)]
    timed["argmax -> classes"] = time.perf_counter() - started
    return timed


def _step_label(step: tuple[str, Any]) -> str:
    return type(step[1]).__name__

"""summary.json is a contract (`perfserve decide`, `capacity`, `compare`'s gate, the
history, other tools): a small bench's summary, built from hand-made measurements of
three variants (one batch-dependent, one noisy, energy not measured, too few runs), is
written byte for byte as a stored copy, and every object in it has exactly the keys, in
the order and with the value types, that its TypedDict declares
(perfserve/benchmarks/offline/summary_types.py)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import numpy as np
import pytest

from perfserve.benchmarks.figures import load_summary
from perfserve.benchmarks.gate.score import DEFAULT_WEIGHTS
from perfserve.benchmarks.offline.bench import BenchPlan, BenchResult, VariantQuality, VariantSpec
from perfserve.benchmarks.offline.operators import Breakdown
from perfserve.benchmarks.offline.report import write_outputs
from perfserve.benchmarks.offline.resources import LoadFigures
from perfserve.benchmarks.offline.summary import summarize
from perfserve.benchmarks.offline.summary_types import BenchSummary, RunEnvironment
from perfserve.benchmarks.offline.timing import Timings
from perfserve_common.usage import UsageError
from service.store import Dataset, HoldoutInfo, Manifest, VariantInfo

STORED = Path(__file__).with_name("data") / "summary.json"
STORE = Path("model_store")
ROWS = 20
RUNS = 5
"""Too few for any verdict: the summary warns."""
CALLS = 4
SIZES = [1, 8]
VARIANTS = {
    # name: format, precision, int8 method, ms per call at batch 1, rows wrong, spread
    "sklearn_fp32": ("sklearn", "fp32", None, 0.40, 2, 0.02),
    "onnx_fp32": ("onnx", "fp32", None, 0.10, 2, 0.02),
    "onnx_int8": ("onnx", "int8", "dynamic", 0.08, 3, 2.0),
}
BATCH_DEPENDENT = {"onnx_int8"}


def _info(name: str) -> VariantInfo:
    model_format, precision, method, _, wrong, _ = VARIANTS[name]
    return VariantInfo(
        name=name,
        format=model_format,
        precision=precision,
        path=f"{name}/model.{model_format}",
        file_size_bytes=10_000 + 1_000 * len(name),
        sha256="ab" * 32,
        model_version="small-mlp-20261207",
        metrics={"accuracy": 1 - wrong / ROWS},
        agreement_with_reference=1 - (wrong - 2) / ROWS,
        metric_deltas={},
        operators=[],
        method=method,
    )


def _timings(name: str, size: int) -> Timings:
    """Calls whose time grows with the batch and varies run to run by `spread`."""
    base_ms, spread = VARIANTS[name][3], VARIANTS[name][5]
    pattern = (np.arange(RUNS * CALLS).reshape(RUNS, CALLS) % 7) / 7
    calls = base_ms / 1000 * (1 + 0.2 * (size - 1)) * (1 + spread * pattern)
    return Timings(name, size, calls, cpu_seconds=float(calls.sum()))


def _quality(name: str) -> VariantQuality:
    wrong = VARIANTS[name][4]
    losses = np.zeros(ROWS)
    losses[ROWS - wrong :] = 1.0
    return VariantQuality(
        metrics={"accuracy": 1 - wrong / ROWS},
        agreement_with_reference=1 - (wrong - 2) / ROWS,
        row_losses=losses,
        batch_independent=name not in BATCH_DEPENDENT,
    )


def small_bench() -> BenchResult:
    """A bench's raw measurements, made by hand: every figure the summary derives from
    them is fixed."""
    manifest = Manifest(
        model_name="small-mlp",
        task="classification",
        target="label",
        feature_names=["a", "b"],
        classes=[0, 1],
        reference="sklearn_fp32",
        holdout=HoldoutInfo(path="holdout.csv", rows=ROWS, sha256="cd" * 32),
        variants={name: _info(name) for name in VARIANTS},
    )
    plan = BenchPlan(
        STORE,
        [VariantSpec(name, manifest.variants[name], STORE) for name in VARIANTS],
        batch_sizes=SIZES,
        runs=RUNS,
        calls_per_run=CALLS,
        cpus=[0],
    )
    environment: RunEnvironment = {
        "threads": 1,
        "cpu_affinity": [0],
        "cpus_pinned": True,
        "blas_pools": [{"library": "openblas", "threads": 1}],
        "code_revision": "0123456789abcdef0123456789abcdef01234567",
        "machine_fingerprint": "0123456789ab",
        "machine": {
            "cpu_model": "Example CPU @ 2.00GHz",
            "logical_cpus": 2,
            "memory_bytes": 8 * 2**30,
            "machine": "x86_64",
            "system": "Linux 6.1.0",
            "python": "3.11.2",
            "numpy": "2.0.0",
            "scikit-learn": "1.5.0",
            "onnxruntime": "1.18.0",
            "scipy": "1.14.0",
        },
    }
    breakdown = Breakdown(
        stages={"preprocess": 1e-5, "model": 6e-5, "postprocess": 1e-5},
        operators={"preprocess/Scaler": 1e-5, "model/MatMul": 5e-5, "model/Relu": 1e-5},
    )
    return BenchResult(
        plan=plan,
        manifest=manifest,
        holdout=Dataset(np.zeros((ROWS, 2), np.float32), np.zeros(ROWS), ["a", "b"], "label"),
        environment=environment,
        quality={name: _quality(name) for name in VARIANTS},
        loads={
            name: LoadFigures(0.05, 4_000_000, {1: 0.002, 8: 0.003}, {1: 4096, 8: 32_768})
            for name in VARIANTS
        },
        timings={(name, size): _timings(name, size) for name in VARIANTS for size in SIZES},
        breakdowns={(name, size): breakdown for name in VARIANTS for size in SIZES},
        energy_source="CPU-time proxy (no readable energy counter)",
        energy_measured=False,
        elapsed_seconds=12.34,
    )


def written(out: Path) -> Path:
    """The small bench's summary.json as `perfserve bench` writes it, at a fixed time."""
    summary = summarize(small_bench(), dict(DEFAULT_WEIGHTS))
    summary["created"] = "2026-12-07T05:40:00+00:00"
    write_outputs(summary, out)
    return out / "summary.json"


def test_summary_json_is_written_byte_for_byte_as_stored(tmp_path: Path) -> None:
    assert written(tmp_path).read_bytes() == STORED.read_bytes()


def test_every_object_has_its_types_keys_in_order_and_their_value_types() -> None:
    summary = json.loads(STORED.read_text())
    assert mismatches(summary, BenchSummary, "summary") == []
    cell = summary["variants"]["onnx_int8"]["batches"]["8"]
    cell["per_call_ms"]["p99"], cell["run_cv"] = "slow", None
    assert mismatches(summary, BenchSummary, "summary") == [
        "summary.variants.onnx_int8.batches.8.per_call_ms.p99: 'slow' is not <class 'float'>",
        "summary.variants.onnx_int8.batches.8.run_cv: None is not <class 'float'>",
    ]
    del summary["best"]
    (missing,) = mismatches(summary, BenchSummary, "summary")
    assert missing.startswith("summary: ['kind'") and missing.endswith("are declared")


def test_the_one_loader_reads_a_bench_and_refuses_a_sweeps_summary(tmp_path: Path) -> None:
    assert load_summary(written(tmp_path / "bench").parent) == json.loads(STORED.read_text())
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "summary.json").write_text(json.dumps({"slo_p99_ms": 50.0, "variants": {}}))
    with pytest.raises(UsageError, match=r"summary.json is not a bench's summary"):
        load_summary(sweep)


def mismatches(value: object, hint: object, where: str) -> list[str]:
    """Where `value`, read from JSON, departs from the type `hint`: an object's keys (and
    their order) against a TypedDict's, then every value against its declared type."""
    origin, args = get_origin(hint), get_args(hint)
    if is_typeddict(hint):
        return _object_mismatches(value, get_type_hints(hint), where)
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        return [
            m for key, item in value.items() for m in mismatches(item, args[1], f"{where}.{key}")
        ]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            m for i, item in enumerate(value) for m in mismatches(item, args[0], f"{where}[{i}]")
        ]
    if origin in (Union, types.UnionType):
        fits = any(not mismatches(value, option, where) for option in args)
    elif origin is Literal:
        fits = value in args
    elif hint is float:  # JSON writes a whole float as a float; an int is a number too
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        fits = isinstance(hint, type) and isinstance(value, hint)
    return [] if fits else [f"{where}: {value!r} is not {hint}"]


def _object_mismatches(value: object, declared: dict[str, object], where: str) -> list[str]:
    if not isinstance(value, dict) or list(value) != list(declared):
        keys = list(value) if isinstance(value, dict) else value
        return [f"{where}: {keys!r} where the keys {list(declared)} are declared"]
    return [
        m for key, hint in declared.items() for m in mismatches(value[key], hint, f"{where}.{key}")
    ]

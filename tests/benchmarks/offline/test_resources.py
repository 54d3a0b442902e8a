"""Memory, energy and the operator breakdown, each measured for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from perfserve.benchmarks.offline.operators import breakdown, classify_nodes
from perfserve.benchmarks.offline.resources import (
    EnergyMeter,
    batch_of,
    measure_load,
    peak_bytes_during,
)
from service.store import Dataset, Manifest

MIB = 2**20


def test_peak_memory_of_a_call_sees_its_allocations() -> None:
    def allocate() -> float:
        return float(np.ones(8 * MIB).sum())  # 64 MiB of float64

    assert peak_bytes_during(allocate) >= 64 * MIB
    assert peak_bytes_during(lambda: None) < MIB


@pytest.mark.integration
def test_load_is_measured_in_a_fresh_process(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    info = manifest.variants["onnx_fp32"]
    figures = measure_load(
        store / info.path, "onnx", "classification", 1, holdout.features, [1, 256]
    )
    assert figures.load_seconds > 0 and figures.load_memory_bytes > 0
    assert set(figures.cold_call_seconds) == {1, 256} == set(figures.peak_inference_bytes)
    # 256 rows x 30 float32 features go in and probabilities come out: some memory, surely.
    assert figures.peak_inference_bytes[256] > 0


def _fake_rapl(root: Path, packages: dict[str, tuple[int, int]]) -> None:
    for name, (energy, wrap) in packages.items():
        zone = root / name
        zone.mkdir(parents=True)
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_counters_are_read_per_package_with_wrap_around(tmp_path: Path) -> None:
    _fake_rapl(
        tmp_path,
        {
            "intel-rapl:0": (1_000_000, 10_000_000),
            "intel-rapl:0:0": (5, 10),
            "intel-rapl:1": (9_000_000, 10_000_000),
        },
    )
    meter = EnergyMeter(tmp_path)
    assert meter.available and "RAPL (2 package" in meter.source  # sub-zone 0:0 not counted twice
    start = meter.read()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("3000000")
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("500000")  # wrapped past 10 J
    assert meter.joules_between(start, meter.read()) == pytest.approx(2.0 + 1.5)


def test_without_rapl_the_energy_is_a_labelled_cpu_time_proxy(tmp_path: Path) -> None:
    meter = EnergyMeter(tmp_path)
    assert not meter.available
    assert meter.source.startswith("CPU-time proxy")


def test_onnx_nodes_are_split_into_preprocess_model_and_postprocess(
    store: Path, manifest: Manifest
) -> None:
    graph = onnx.load(str(store / manifest.variants["onnx_fp32"].path)).graph
    stages = classify_nodes(graph, "classification")
    by_type: dict[str, set[str]] = {}
    for node in graph.node:
        by_type.setdefault(node.op_type, set()).add(stages[node.name])
    assert by_type["Scaler"] == {"preprocess"}
    assert by_type["MatMul"] == {"model"}
    assert by_type["ArgMax"] == {"postprocess"}


@pytest.mark.parametrize("variant", ["sklearn_fp32", "onnx_int8"])
def test_breakdown_times_every_stage(
    store: Path, manifest: Manifest, holdout: Dataset, variant: str
) -> None:
    info = manifest.variants[variant]
    result: Any = breakdown(
        store / info.path,
        info.format,
        "classification",
        batch_of(holdout.features, 32),
        calls=5,
        threads=1,
    )
    assert result.stages["preprocess"] > 0 and result.stages["model"] > 0
    assert result.stages["postprocess"] > 0
    assert sum(result.shares().values()) == pytest.approx(1.0)
    assert sum(result.operators.values()) <= result.total + 1e-12

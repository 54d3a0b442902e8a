"""`perfserve capacity` prints the bounds the autoscaler in deploy/ should use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfserve.benchmarks.capacity.autoscaling import MIN_AVAILABLE_REPLICAS, replica_bounds
from perfserve.benchmarks.capacity.capacity import ReplicaFigures, plan_capacity
from perfserve.cli import main


def test_bounds_follow_the_plan_at_the_target_utilization() -> None:
    plan = plan_capacity(ReplicaFigures("v", 1000.0, "test"), peak_qps=4000, safety_factor=1.5)
    bounds = replica_bounds(plan, target_utilization=0.7)
    # 6,000 design QPS over 700 QPS per replica at 70% busy: 9 replicas at the peak.
    assert bounds.max_replicas == plan.replicas == 9
    assert bounds.target_qps_per_replica == pytest.approx(700.0)
    assert bounds.min_replicas == MIN_AVAILABLE_REPLICAS


def test_a_busy_trough_raises_the_floor_and_a_tiny_peak_never_drops_below_it() -> None:
    busy = plan_capacity(ReplicaFigures("v", 1000.0, "test"), peak_qps=4000)
    assert replica_bounds(busy, 0.7, trough_qps=2000).min_replicas == 3  # 2000 / 700
    tiny = plan_capacity(ReplicaFigures("v", 1000.0, "test"), peak_qps=10)
    bounds = replica_bounds(tiny, 0.7)
    assert (bounds.min_replicas, bounds.max_replicas) == (2, 2)


def test_capacity_command_prints_the_bounds_from_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = {"slo_p99_ms": 50.0, "variants": {"onnx_int8": {"knee_qps": 5000.0}}}
    (tmp_path / "summary.json").write_text(json.dumps(sweep))
    argv = ["capacity", "--peak-qps", "20000", "--trough-qps", "4000", "--sweep", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = out[out.index("autoscaler bounds") :].splitlines()
    # 30,000 design QPS / 3,500 per replica = 9 at the peak; 4,000 / 3,500 = 2 at the trough.
    assert table[2].split() == ["onnx_int8", "2", "9", "3,500"]


def test_a_trough_above_the_peak_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--peak-qps", "100", "--trough-qps", "200"]) == 2
    assert "--trough-qps 200: must be positive and at most --peak-qps" in capsys.readouterr().err

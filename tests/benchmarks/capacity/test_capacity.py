"""Capacity figures against hand-computed queueing results, and the command on real inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from perfserve.benchmarks.capacity.capacity import (
    ReplicaFigures,
    from_bench,
    plan_capacity,
    replicas_for,
)
from perfserve.benchmarks.offline.summary_types import BenchSummary
from perfserve.cli import main

MIB = 2**20


def test_replicas_keep_utilization_under_the_target() -> None:
    assert replicas_for(100, 80, 0.7) == 2  # 100 / 56 = 1.79
    assert replicas_for(56, 80, 0.7) == 1  # exactly at the target
    assert replicas_for(1, 1000, 0.7) == 1


def test_plan_against_hand_computed_m_m_c_and_littles_law() -> None:
    figures = ReplicaFigures(
        "v", 80.0, "test", load_memory_bytes=20 * MIB, peak_inference_bytes=MIB, file_size_bytes=MIB
    )
    plan = plan_capacity(
        figures,
        peak_qps=100,
        safety_factor=1.0,
        target_utilization=0.7,
        memory_budget_bytes=100 * MIB,
        storage_budget_bytes=10 * MIB,
    )
    # lambda 100/s, mu 80/s, c = 2, a = 1.25, rho = 0.625
    a, rho = 1.25, 0.625
    waits = a**2 / (2 * (1 - rho)) / (1 + a + a**2 / (2 * (1 - rho)))  # 0.48077
    assert plan.replicas == 2
    assert plan.utilization == pytest.approx(rho)
    assert plan.wait_probability == pytest.approx(waits)
    assert plan.mean_wait_s == pytest.approx(waits / (2 * 80 - 100))  # 8.01 ms
    assert plan.mean_response_s == pytest.approx(waits / 60 + 1 / 80)
    assert plan.in_flight == pytest.approx(100 * plan.mean_response_s)  # L = lambda W
    assert plan.queued == pytest.approx(100 * plan.mean_wait_s)  # Lq = lambda Wq
    assert plan.p99_wait_s == pytest.approx(math.log(waits / 0.01) / 60)
    assert plan.max_concurrent_per_replica == 80  # (100 - 20) MiB / 1 MiB
    assert plan.replicas_in_storage == 10


def test_safety_factor_scales_the_design_load() -> None:
    plan = plan_capacity(ReplicaFigures("v", 100.0, "test"), peak_qps=100, safety_factor=2.0)
    assert plan.design_qps == 200
    assert plan.replicas == 3  # 200 / 70 = 2.86
    assert plan.max_concurrent_per_replica is None and plan.replicas_in_storage is None
    with pytest.raises(ValueError):
        plan_capacity(ReplicaFigures("v", 100.0, "test"), peak_qps=100, target_utilization=1.0)


def test_capacity_command_from_a_bench(bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "capacity",
            "--peak-qps",
            "500",
            "--bench",
            str(bench_dir),
            "--memory-budget-mb",
            "256",
            "--storage-budget-mb",
            "10",
            "--request-overhead-ms",
            "0.2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for variant in ("sklearn_fp32", "onnx_fp32", "onnx_int8"):
        assert variant in out
    assert "design load 750 QPS" in out
    assert "+0.2 ms HTTP overhead per request (--request-overhead-ms)" in out
    assert f"model time, memory and size from the bench in {bench_dir}" in out


def test_capacity_from_a_bench_measures_the_http_overhead_first(
    bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --request-overhead-ms the plan must not treat HTTP as free: a probe of the
    real service measures it, and the plan says so, per variant."""
    assert main(["capacity", "--peak-qps", "500", "--bench", str(bench_dir)]) == 0
    captured = capsys.readouterr()
    assert "a short probe of `perfserve serve`" in captured.err
    for variant in ("sklearn_fp32", "onnx_fp32", "onnx_int8"):
        line = next(x for x in captured.out.splitlines() if x.startswith(f"{variant}: HTTP"))
        overhead_ms = float(line.split("HTTP overhead ")[1].split(" ms")[0])
        assert overhead_ms > 0.005  # parsing, routing and answering are never free
        assert "sequential requests" in line and "Server-Timing infer" in line
        assert f"  {variant}: service rate from bench throughput" in captured.out


def test_capacity_refuses_when_the_overhead_cannot_be_measured(
    bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["capacity", "--peak-qps", "500", "--bench", str(bench_dir)]
    assert main([*args, "--store", str(tmp_path / "no-store")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs what HTTP adds to each request" in error
    assert "--request-overhead-ms" in error and "--sweep" in error


def test_request_overhead_lowers_the_service_rate(bench_summary: BenchSummary) -> None:
    (alone,) = [f for f in from_bench(bench_summary, 8, 4) if f.variant == "onnx_int8"]
    (served,) = [f for f in from_bench(bench_summary, 8, 4, 0.001) if f.variant == "onnx_int8"]
    throughput = bench_summary["variants"]["onnx_int8"]["batches"]["8"]["throughput_sps"]["mean"]
    assert alone.service_rate == pytest.approx(throughput / 4)
    assert served.service_rate == pytest.approx(1 / (4 / throughput + 0.001))


def test_capacity_command_from_a_sweep_knee(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "summary.json").write_text(
        json.dumps(
            {
                "slo_p99_ms": 50.0,
                "variants": {
                    "onnx_int8": {
                        "knee_qps": 80.0,
                        "knee_limited_by": "slo",
                        "knee_is_lower_bound": False,
                    },
                    "onnx_fp32": {
                        "knee_qps": 1600.0,
                        "knee_limited_by": "generator",
                        "knee_is_lower_bound": True,
                    },
                    "sklearn_fp32": {
                        "knee_qps": None,
                        "knee_limited_by": "none-held",
                        "knee_is_lower_bound": False,
                    },
                },
            }
        )
    )
    code = main(["capacity", "--peak-qps", "100", "--safety-factor", "1", "--sweep", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("onnx_int8"))
    assert line.split()[1:4] == ["80", "2", "62%"]  # the hand-computed plan above
    assert "sklearn_fp32: no knee" in out
    assert "onnx_fp32: the knee ≥ 1,600 QPS is a lower bound (limited by generator" in out
    assert "onnx_int8: the knee" not in out


def test_capacity_command_refuses_a_folder_that_is_not_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["capacity", "--peak-qps", "100", "--sweep", str(tmp_path)]) == 2
    assert "no sweep results" in capsys.readouterr().err


def test_a_sweep_knee_with_an_interval_plans_from_its_low_end_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    knee = {"knee_limited_by": "slo", "knee_is_lower_bound": False, "knee_method": "rounds"}
    (tmp_path / "summary.json").write_text(
        json.dumps(
            {
                "slo_p99_ms": 50.0,
                "conclusive": False,
                "inconclusive_reason": "the server's core ran at 0.62 to 1.00",
                "settings": {"step_seconds": 3.0},
                "conditions": {"core_speed": {"slowest_share": 0.5, "between_rounds_share": 0.62}},
                "variants": {
                    "onnx_int8": knee
                    | {"knee_qps": 100.0, "knee_low_qps": 80.0, "knee_high_qps": 110.0}
                    | {"knee_rounds": 5},
                },
            }
        )
    )
    code = main(["capacity", "--peak-qps", "100", "--safety-factor", "1", "--sweep", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("onnx_int8"))
    assert line.split()[1:4] == ["80", "2", "62%"]  # as from a knee of 80: the low end
    assert "low end of the sweep knee's interval (80 of 100 QPS, 5 round(s)" in out
    assert "WARNING: the sweep was not conclusive (the server's core ran at 0.62" in out
    assert "WARNING: planned from short steps (3 s each)" in out
    assert "WARNING: the server's core ran at 0.62 of its fastest round's speed" in out

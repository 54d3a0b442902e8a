"""summary.json is a contract (`perfserve capacity --sweep`, the report, other tools): its
bytes for a report that uses every field (knees of each kind, comparisons, stress with a
recovery, a soak, warm-up figures, statuses and windows) are pinned to a stored copy, so a
change to how the summary is built cannot change what it writes unnoticed."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from loadtests.report.outputs import summary, write_outputs
from loadtests.report.summary_types import ClientFigures
from loadtests.sweep.endurance import SoakReport, StressReport
from loadtests.sweep.intervals import KneeComparison, Verdict
from loadtests.sweep.results import ClientSide, StepResult
from loadtests.sweep.runner import SweepPlan, SweepReport, TargetReport
from loadtests.sweep.steps import StepSettings
from tests.utils.sweep_steps import step

STORED = Path(__file__).with_name("data") / "summary.json"


def detailed(base: StepResult, phase: str = "sweep") -> StepResult:
    """`base` with the fields a bare step leaves empty: statuses, windows, a warm-up."""
    totals = replace(base.totals, statuses={"200": base.totals.ok, "503": 3}, shed=3)
    totals.answered_by = {"127.0.0.1:8001": base.totals.ok}
    return replace(
        base,
        phase=phase,
        totals=totals,
        server=replace(base.server, statuses={"200": 12.0}, rejected={"queue_full": 3.0}),
        window_p99_ms=[base.client.p99_ms, base.client.p99_ms * 1.1, float("nan")],
        window_qps=[base.target_qps, base.target_qps * 0.99],
        rss_mb=[(0.0, 100.0), (30.5, 101.25)],
        core_rate=1234.5,
        warmup_s=1.5,
        warmup=replace(base.client, achieved_qps=base.target_qps * 0.9, p99_ms=7.123456),
    )


def full_report() -> SweepReport:
    plan = SweepPlan(
        url="http://127.0.0.1:8000",
        targets=["onnx_int8", "sklearn_fp32"],
        rates=[100, 200, 400],
        steps=StepSettings(slo_p99_ms=50.0, step_seconds=3.0),
        store=Path("model_store"),
        stress=True,
        soak_rate=150.0,
        soak_seconds=60.0,
    )
    int8 = TargetReport.from_rounds(
        "onnx_int8",
        [
            [detailed(step("onnx_int8", r, "holds", 3.0 + r / 100)) for r in (100, 200, 400)],
            [detailed(step("onnx_int8", r, "holds", 4.0)) for r in (100, 200)]
            + [detailed(step("onnx_int8", 400, "misses-slo", 80.0))],
        ],
    )
    int8.stress = StressReport(
        steps=[detailed(step("onnx_int8", 800, "misses-slo", 120.0), "stress")],
        breaking_qps=800.0,
        degradation=[{"factor": 2.0, "p99_ms": 120.123456, "error_share": float("nan")}],
        recovery=detailed(step("onnx_int8", 100, "holds", 5.0), "recovery"),
        recovery_s=2.5,
    )
    int8.soak = SoakReport(
        step=detailed(step("onnx_int8", 150, "holds", 4.5), "soak"),
        rss_start_mb=100.0,
        rss_end_mb=101.25,
        rss_slope_mb_per_hour=2.123456,
    )
    fp32 = TargetReport.from_rounds(
        "sklearn_fp32",
        [
            [
                detailed(step("sklearn_fp32", 100, "holds", 10.0)),
                detailed(step("sklearn_fp32", 200, "generator-bound", 30.0)),
            ]
        ],
    )
    comparison = KneeComparison(
        "sklearn_fp32", "onnx_int8", 0.123456789, 0.05, None, Verdict.HIGHER, 2
    )
    # Each step's core speed in the file is its core_rate over the fastest reading here.
    core_speed = {
        "cpu": 0,
        "fastest_rate": 1249.9,
        "slowest_share": 0.9877,
        "readings": 11,
        "round_median_shares": [0.9877, 0.8692],
        "between_rounds_share": 0.88,
    }
    conditions = {
        "date": "2026-11-30 18:00 UTC",
        "logical_cpus": 2,
        "server_cpus": [0],
        "core_speed": core_speed,
    }
    return SweepReport(
        plan, [int8, fp32], conditions=conditions, comparisons=[comparison],
        inconclusive_reason="the core's speed moved 12% between rounds",
    )  # fmt: skip


def test_summary_json_is_written_byte_for_byte_as_stored(tmp_path: Path) -> None:
    write_outputs(full_report(), tmp_path)
    assert (tmp_path / "summary.json").read_bytes() == STORED.read_bytes()


def test_a_target_without_server_metrics_keeps_the_note() -> None:
    report = replace(full_report(), server_metrics=False)
    written = json.loads(json.dumps(summary(report), indent=2))
    assert written["server_metrics"] is False and written["server_metrics_note"]


def test_every_client_side_figure_has_its_column() -> None:
    """A figure added to ClientSide must be added to the files' shape too, or it would be
    measured and never written."""
    assert list(ClientFigures.__annotations__) == [f.name for f in fields(ClientSide)]

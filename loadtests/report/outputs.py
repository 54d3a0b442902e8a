"""A sweep's files: steps.csv, summary.json, the plots and the HTML report.

summary.json is read by `perfserve capacity --sweep DIR`: `slo_p99_ms`, `conclusive` and
`inconclusive_reason` (the machine moved too much to support the knees), `comparisons`
(each pair of targets: `difference` of the candidate's knee from the baseline's, its
`ci_low` and `ci_high`, a `verdict`), and, per target, `knee_qps` (null when no rate
held), its interval `knee_low_qps` to `knee_high_qps` (null: unbounded), `knee_method`
and `knee_rounds`, `knee_is_lower_bound` (the server may hold more: the generator, an
unsettled step or the top rate tried ended the search) and its `steps`. knee.csv has one
row per target with the same knee fields. Rates are written as whole requests/s.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests.report.html import write_html
from loadtests.report.plots import write_plots
from loadtests.report.summary_types import (
    ClientFigures,
    ComparisonJson,
    Endurance,
    KneeFields,
    KneeRow,
    SoakJson,
    StepJson,
    StepRow,
    StressJson,
    VariantResult,
)
from loadtests.sweep.endurance import SoakReport, StressReport
from loadtests.sweep.intervals import KneeComparison
from loadtests.sweep.results import ClientSide, StepResult
from loadtests.sweep.runner import SweepReport, TargetReport, core_share, describe_plan
from loadtests.sweep.server_metrics import CLIENT_SIDE_ONLY


def client_figures(client: ClientSide) -> ClientFigures:
    """A step's client side, rounded."""
    return {
        "achieved_qps": _round(client.achieved_qps),
        "sent_qps": _round(client.sent_qps),
        "answers": client.answers,
        "p50_ms": _round(client.p50_ms),
        "p90_ms": _round(client.p90_ms),
        "p95_ms": _round(client.p95_ms),
        "p99_ms": _round(client.p99_ms),
        "p999_ms": _round(client.p999_ms),
        "max_ms": _round(client.max_ms),
        "sent_p50_ms": _round(client.sent_p50_ms),
        "sent_p99_ms": _round(client.sent_p99_ms),
        "sent_max_ms": _round(client.sent_max_ms),
        "miss_ratio": _round(client.miss_ratio),
        "sent_miss_ratio": _round(client.sent_miss_ratio),
        "outside_p50_ms": _round(client.outside_p50_ms),
        "outside_p99_ms": _round(client.outside_p99_ms),
        "late_sends": client.late_sends,
    }


def step_row(step: StepResult, fastest_core_rate: float | None) -> StepRow:
    """One CSV row: the step, its client side, totals, server side, theory, verdict; its
    core speed against the run's fastest reading (`SweepReport.fastest_core_rate`)."""
    counts, server, warmup = step.totals, step.server, step.warmup
    return {
        "target": step.target,
        "phase": step.phase,
        "step": step.step,
        "round": step.round,
        "target_qps": rate(step.target_qps),
        "duration_s": round(step.duration_s, 3),
        "windows": step.windows,
        **client_figures(step.client),
        "requests": counts.requests,
        "ok": counts.ok,
        "shed": counts.shed,
        "errors": counts.errors,
        "late": counts.late,
        "blocked": counts.blocked,
        "dropped": counts.dropped,
        "server_requests": _round(server.requests),
        "server_ok": _round(server.ok),
        "server_queue_ms": _round(server.queue_ms),
        "server_infer_ms_per_batch": _round(server.infer_ms_per_batch),
        "server_mean_batch_rows": _round(server.mean_batch_rows),
        "server_utilization": _round(server.utilization),
        "server_cpu_cores": _round(server.cpu_cores),
        "server_sampled_in_flight": _round(server.sampled_in_flight),
        "server_little_in_flight": _round(server.little_in_flight),
        "server_mean_latency_ms": _round(server.mean_latency_ms),
        "server_rss_bytes": _round(server.rss_bytes),
        "predicted_queue_ms": _round(step.predicted_queue_ms),
        "little_disagreement": _round(step.little_disagreement),
        "generator_cpu": _round(step.generator_cpu),
        "generator_late_share": _round(step.generator_late_share),
        "core_rate": _round(step.core_rate),
        "core_speed": _round(core_share(step.core_rate, fastest_core_rate)),
        "warmup_s": _round(step.warmup_s),
        "warmup_achieved_qps": rate(warmup.achieved_qps) if warmup else None,
        "warmup_p99_ms": _round(warmup.p99_ms) if warmup else None,
        "warmup_late": warmup.late_sends if warmup else None,
        "enough_samples": step.enough_samples,
        "stable": step.stable,
        "verdict": step.verdict,
    }


def rate(value: float | None) -> int | None:
    """A rate as whole requests/s (one format in every file); None when unknown."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value)


def _round(value: float | None) -> float | None:
    """A figure to 4 decimals, None when unknown; a whole number (a count) as it is."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    return value


def step_json(step: StepResult, fastest_core_rate: float | None) -> StepJson:
    return {
        **step_row(step, fastest_core_rate),
        "statuses": step.totals.statuses,
        "answered_by": step.totals.answered_by,
        "server_statuses": step.server.statuses,
        "server_rejected": step.server.rejected,
        "window_p99_ms": [_round(v) for v in step.window_p99_ms],
        "window_qps": [_round(v) for v in step.window_qps],
    }


def knee_fields(report: TargetReport) -> KneeFields:
    """The knee and its interval, as summary.json and knee.csv both give them."""
    interval = report.interval
    step = report.knee.step
    return {
        "knee_qps": rate(report.knee.qps),
        "knee_low_qps": rate(interval.low_qps) if interval else None,
        "knee_high_qps": rate(interval.high_qps) if interval else None,
        "knee_method": interval.method if interval else None,
        "knee_rounds": interval.rounds if interval else 0,
        "knee_is_lower_bound": report.knee.is_lower_bound,
        "knee_limited_by": report.knee.limited_by,
        "runner_utilization_at_knee": _round(step.server.utilization) if step else None,
        "knee_p50_ms": _round(step.client.p50_ms) if step else None,
        "knee_p99_ms": _round(step.client.p99_ms) if step else None,
    }


def target_json(report: TargetReport, fastest_core_rate: float | None) -> VariantResult:
    endurance: Endurance = {}
    if report.stress is not None:
        endurance["stress"] = stress_json(report.stress, fastest_core_rate)
    if report.soak is not None:
        endurance["soak"] = soak_json(report.soak, fastest_core_rate)
    return {
        **knee_fields(report),
        "round_knees_qps": [rate(k.qps) for k in report.rounds],
        "steps": [step_json(s, fastest_core_rate) for s in report.steps],
        **endurance,
    }


def stress_json(stress: StressReport, fastest_core_rate: float | None) -> StressJson:
    return {
        "breaking_qps": stress.breaking_qps,
        "degradation": [{k: _round(v) for k, v in d.items()} for d in stress.degradation],
        "recovery_s": stress.recovery_s,
        "steps": [step_json(s, fastest_core_rate) for s in stress.steps],
        "recovery": step_json(stress.recovery, fastest_core_rate) if stress.recovery else None,
    }


def soak_json(soak: SoakReport, fastest_core_rate: float | None) -> SoakJson:
    return {
        "rss_start_mb": _round(soak.rss_start_mb),
        "rss_end_mb": _round(soak.rss_end_mb),
        "rss_slope_mb_per_hour": _round(soak.rss_slope_mb_per_hour),
        "rss_mb": [[round(t, 2), round(mb, 2)] for t, mb in soak.step.rss_mb],
        "step": step_json(soak.step, fastest_core_rate),
    }


def comparison_json(comparison: KneeComparison) -> ComparisonJson:
    return {
        "baseline": comparison.baseline,
        "candidate": comparison.candidate,
        "difference": _round(comparison.difference),
        "ci_low": _round(comparison.ci_low),
        "ci_high": _round(comparison.ci_high),
        "verdict": comparison.verdict,
        "rounds": comparison.rounds,
    }


def summary(report: SweepReport) -> dict[str, Any]:
    return {
        "slo_p99_ms": report.plan.steps.slo_p99_ms,
        "conclusive": report.conclusive,
        "inconclusive_reason": report.inconclusive_reason,
        "comparisons": [comparison_json(c) for c in report.comparisons],
        "generator_ceiling_qps": _round(report.generator_ceiling_qps),
        "settings": describe_plan(report.plan),
        "conditions": report.conditions,
        "server_metrics": report.server_metrics,
        **({} if report.server_metrics else {"server_metrics_note": CLIENT_SIDE_ONLY}),
        "variants": {t.target: target_json(t, report.fastest_core_rate) for t in report.targets},
    }


def write_outputs(report: SweepReport, out: Path) -> dict[str, Any]:
    """Every file of the sweep into `out`; returns summary.json's contents."""
    out.mkdir(parents=True, exist_ok=True)
    fastest = report.fastest_core_rate
    _write_csv(
        out / "steps.csv", [step_row(s, fastest) for t in report.targets for s in t.all_steps()]
    )
    _write_csv(
        out / "knee.csv", [knee_row(t, report.plan.steps.slo_p99_ms) for t in report.targets]
    )
    document = summary(report)
    (out / "summary.json").write_text(json.dumps(document, indent=2))
    plots = write_plots(report, out)
    write_html(document, plots, out / "report.html")
    return document


def knee_row(report: TargetReport, slo_p99_ms: float) -> KneeRow:
    """One knee.csv row: the knee and its interval, whether it is only a lower bound, and
    why."""
    return {
        "target": report.target,
        "slo_p99_ms": slo_p99_ms,
        **knee_fields(report),
        "steps": len(report.steps),
    }


def _write_csv(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    with path.open("w", newline="") as file:
        if rows:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

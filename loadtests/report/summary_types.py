"""The shapes of a sweep's files, field by field: a steps.csv row, a step and a variant's
result in summary.json, a knee.csv row.

TypedDicts rather than dataclasses because these are the files' own JSON objects: what
`json.dumps` writes is exactly what loadtests/report/outputs.py builds, in the order it
builds the keys, so mypy checks every field without a conversion that could change a
byte of summary.json (tests/loadtests/test_summary_file.py pins them). A subclass adds
keys; it says nothing of where they stand in the file.
"""

from __future__ import annotations

from typing import TypedDict


class ClientFigures(TypedDict):
    """`loadtests.sweep.results.ClientSide`, rounded: one key per field, in its order."""

    achieved_qps: float | None
    sent_qps: float | None
    answers: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    sent_p50_ms: float | None
    sent_p99_ms: float | None
    sent_max_ms: float | None
    miss_ratio: float | None
    sent_miss_ratio: float | None
    outside_p50_ms: float | None
    outside_p99_ms: float | None
    late_sends: int
    """Of the measured windows only; the row's `late` counts the whole step."""


class StepRow(ClientFigures):
    """One step as a steps.csv row: the step, its client side, totals, server side,
    theory and verdict. Rates are whole requests/s; an unknown figure is None."""

    target: str
    phase: str
    step: int
    round: int
    target_qps: int | None
    duration_s: float
    windows: int
    requests: int
    ok: int
    shed: int
    errors: int
    late: int
    blocked: int
    dropped: int
    server_requests: float | None
    server_ok: float | None
    server_queue_ms: float | None
    server_infer_ms_per_batch: float | None
    server_mean_batch_rows: float | None
    server_utilization: float | None
    server_cpu_cores: float | None
    server_sampled_in_flight: float | None
    server_little_in_flight: float | None
    server_mean_latency_ms: float | None
    server_rss_bytes: float | None
    predicted_queue_ms: float | None
    little_disagreement: float | None
    generator_cpu: float | None
    generator_late_share: float | None
    core_rate: float | None
    core_speed: float | None
    warmup_s: float | None
    warmup_achieved_qps: int | None
    warmup_p99_ms: float | None
    warmup_late: int | None
    enough_samples: bool
    stable: bool
    verdict: str


class StepJson(StepRow):
    """A step in summary.json: its steps.csv row, with the counts by status and the
    per-window figures."""

    statuses: dict[str, int]
    answered_by: dict[str, int]
    server_statuses: dict[str, float]
    server_rejected: dict[str, float]
    window_p99_ms: list[float | None]
    window_qps: list[float | None]


class KneeFields(TypedDict):
    """The knee and its interval, as summary.json and knee.csv both give them."""

    knee_qps: int | None
    knee_low_qps: int | None
    knee_high_qps: int | None
    knee_method: str | None
    knee_rounds: int
    knee_is_lower_bound: bool
    knee_limited_by: str
    runner_utilization_at_knee: float | None
    knee_p50_ms: float | None
    knee_p99_ms: float | None


class StressJson(TypedDict):
    breaking_qps: float | None
    degradation: list[dict[str, float | None]]
    recovery_s: float | None
    steps: list[StepJson]
    recovery: StepJson | None


class SoakJson(TypedDict):
    rss_start_mb: float | None
    rss_end_mb: float | None
    rss_slope_mb_per_hour: float | None
    rss_mb: list[list[float]]
    step: StepJson


class Endurance(TypedDict, total=False):
    """What `--stress` and `--soak` add to a variant's result, when they ran."""

    stress: StressJson
    soak: SoakJson


class VariantResult(KneeFields, Endurance):
    """One variant (or the split) in summary.json's `variants`."""

    round_knees_qps: list[int | None]
    steps: list[StepJson]


class KneeRow(KneeFields):
    """One knee.csv row: the target, its SLO, its knee and how many steps it took."""

    target: str
    slo_p99_ms: float
    steps: int


class ComparisonJson(TypedDict):
    """One pair of targets in summary.json's `comparisons`."""

    baseline: str
    candidate: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    rounds: int

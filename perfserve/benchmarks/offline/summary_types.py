"""The shape of a bench's summary.json, field by field: the machine and settings it ran
with, each variant's figures per batch size, the comparisons, warnings and verdicts.

TypedDicts rather than dataclasses because these are the file's own JSON objects (as the
sweep's, loadtests/report/summary_types.py): what `json.dumps` writes is exactly what
perfserve/benchmarks/offline/summary.py builds, in the order it builds the keys, so mypy
checks every field without a conversion that could change a byte of summary.json
(tests/benchmarks/offline/test_summary_file.py pins them). `perfserve decide`,
`capacity`, `compare`'s gate and the history read it back through one loader,
`perfserve.benchmarks.figures.load_summary` (`parse_summary` for a summary inside a
history record). A subclass adds keys; it says nothing of where they stand in the file.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class BlasPool(TypedDict):
    library: str
    threads: int


class Pinning(TypedDict):
    """The thread and CPU settings in force while the bench timed."""

    threads: int
    cpu_affinity: list[int]
    cpus_pinned: bool
    blas_pools: list[BlasPool]


# What makes timings comparable (the fingerprint hashes it); the runtime packages' versions
# are keyed by their distribution names, which are not all identifiers.
MachineDescription = TypedDict(
    "MachineDescription",
    {
        "cpu_model": str,
        "logical_cpus": int | None,
        "memory_bytes": int,
        "machine": str,
        "system": str,
        "python": str,
        "numpy": str,
        "scikit-learn": str,
        "onnxruntime": str,
        "scipy": str,
    },
)


class RunEnvironment(Pinning):
    """Where the bench ran: its settings, the code and the machine."""

    code_revision: str
    machine_fingerprint: str
    machine: MachineDescription


class BenchEnvironment(RunEnvironment):
    """summary.json's `environment`: the run's, and where the energy figures came from."""

    energy_source: str
    energy_measured: bool


class HoldoutJson(TypedDict):
    rows: int
    sha256: str


class PlanJson(TypedDict):
    """What was timed and how: summary.json's `plan`."""

    variants: list[str]
    batch_sizes: list[int]
    runs: int
    calls_per_run: int | Literal["auto"]
    """"auto": as many calls as fill `min_block_seconds`."""
    min_block_seconds: float
    warmup_calls: int
    baseline: str
    headline_batch_size: int
    weights: dict[str, float]
    """The weights the score used (energy dropped to 0 when no counter was readable)."""
    min_effect: float
    elapsed_seconds: float


class LatencyMs(TypedDict):
    """Milliseconds: the mean with its 95% CI over run means, percentiles over every
    timed call."""

    mean: float
    ci_low: float
    ci_high: float
    p50: float
    p95: float
    p99: float
    max: float


class ThroughputSps(TypedDict):
    """Samples (rows) per second, from the mean per-call time and its CI."""

    mean: float
    ci_low: float
    ci_high: float


class BatchJson(TypedDict):
    """One variant at one batch size."""

    per_call_ms: LatencyMs
    per_sample_ms: LatencyMs
    throughput_sps: ThroughputSps
    cold_call_ms: float
    peak_inference_bytes: int
    cpu_ms_per_sample: float
    energy_mj_per_sample: float
    calls_per_run: int
    run_cv: float
    stage_shares: dict[str, float]
    profiled_us: dict[str, float]
    """Microseconds per call by `stage/operator`."""
    run_means_ms: list[float]


class MeasuredVariant(TypedDict):
    """One variant as measured, before the composite score ranks it against the others."""

    format: str
    precision: str
    method: str | None
    batch_independent: bool
    model_version: str
    file_size_bytes: int
    injected_delay_ms: float
    load_seconds: float
    load_memory_bytes: int
    quality: dict[str, float]
    agreement_with_reference: float
    batches: dict[str, BatchJson]
    """By batch size (a string: JSON's keys are)."""


class VariantJson(MeasuredVariant):
    """One variant in summary.json's `variants`."""

    score: float


class SpeedComparison(TypedDict):
    """A candidate's per-call time against the baseline's at one batch size, paired by run."""

    batch_size: int
    baseline: str
    candidate: str
    metric: str
    baseline_mean: float
    candidate_mean: float
    difference: float
    ci_low: float
    ci_high: float
    relative: float
    cohens_d: float
    p_value: float
    test: str
    verdict: str


class QualityComparison(TypedDict):
    """A candidate's headline quality against the baseline's, paired row by row."""

    baseline: str
    candidate: str
    metric: str
    baseline_value: float
    candidate_value: float
    difference: float
    p_value: float
    test: str
    verdict: str
    agreement_with_reference: float


class PrecisionEntry(TypedDict):
    """One variant in a row of the fastest-precision table."""

    variant: str
    precision_method: str
    per_call_us: float
    equal_quality: bool
    batch_independent: bool


class FastestRow(TypedDict):
    """The fastest precision and method at one batch size, at equal quality."""

    batch_size: int
    fastest: str | None
    fastest_precision_method: str | None
    within_noise: list[str]
    variants: list[PrecisionEntry]


class BenchSummary(TypedDict):
    """A bench's summary.json (also what `perfserve compare` writes and the history keeps)."""

    kind: Literal["bench"]
    created: str
    store: str
    model_name: str
    model_version: str
    task: str
    holdout: HoldoutJson
    environment: BenchEnvironment
    plan: PlanJson
    variants: dict[str, VariantJson]
    comparisons: list[SpeedComparison]
    quality_comparisons: list[QualityComparison]
    warnings: list[str]
    best: dict[str, list[str]]
    """The best variants on each dimension and `overall`; ties are all named."""
    fastest_by_batch_size: list[FastestRow]

"""`perfserve bench`: quality, speed, resources and operators of every variant, on the
store's fixed hold-out, measured the same way for all of them."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perfserve.benchmarks.offline.environment import (
    machine_description,
    machine_fingerprint,
    pinned,
)
from perfserve.benchmarks.offline.operators import Breakdown, breakdown
from perfserve.benchmarks.offline.resources import EnergyMeter, LoadFigures, batch_of, measure_load
from perfserve.benchmarks.offline.summary_types import RunEnvironment
from perfserve.benchmarks.offline.timing import TimingPlan, Timings, time_interleaved
from perfserve.modelstore.int8 import BATCH_TOLERANCE, mixed_batch_deviation
from perfserve_common.machine import code_revision
from service.quality import agreement, quality_metrics
from service.runtimes import PerRowRunner, Runner, SlowedRunner, open_variant
from service.store import Dataset, Manifest, StoreError, VariantInfo, load_holdout

DEFAULT_BATCH_SIZES = [1, 8, 64]
MAX_BATCH_SIZE = 1024

Say = Callable[[str], None]


@dataclass(frozen=True)
class VariantSpec:
    """One variant to measure. `delay_s` injects latency into every call (a sensitivity
    check: can this bench see a regression of that size?)."""

    name: str
    info: VariantInfo
    store: Path
    delay_s: float = 0.0

    @property
    def path(self) -> Path:
        return self.store / self.info.path


@dataclass(frozen=True)
class BenchPlan:
    store: Path
    variants: list[VariantSpec]
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    runs: int = 30
    calls_per_run: int | None = None
    """None: as many calls as fill `min_block_seconds` per block."""
    min_block_seconds: float = 0.01
    warmup_calls: int = 5
    profile_calls: int = 100
    threads: int = 1
    cpus: list[int] | None = None
    baseline: str | None = None
    """Variant every other is compared with; default: the store's reference."""

    def check(self) -> None:
        """Refuse plans that cannot give the statistics the report promises."""
        if not self.variants:
            raise ValueError("no variant to benchmark")
        if self.runs < 2 or (self.calls_per_run or 1) < 1 or self.warmup_calls < 0:
            raise ValueError("need --runs >= 2, --calls-per-run >= 1, --warmup >= 0")
        if self.calls_per_run is None and (self.warmup_calls < 1 or self.min_block_seconds <= 0):
            raise ValueError("sizing blocks by time needs --warmup >= 1 and --min-block-ms > 0")
        if not self.batch_sizes or not all(1 <= b <= MAX_BATCH_SIZE for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be 1..{MAX_BATCH_SIZE}")
        names = [spec.name for spec in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not among {names}")
        allowed = os.sched_getaffinity(0)
        if self.cpus is not None and not set(self.cpus) <= allowed:
            raise ValueError(
                f"CPUs {self.cpus} are not all available; this process may use {sorted(allowed)}"
            )


@dataclass
class VariantQuality:
    metrics: dict[str, float]
    agreement_with_reference: float
    row_losses: np.ndarray
    """Per hold-out row: 1 for a wrong label (0 right), or the squared error of a regressor;
    paired row by row, they say whether a quality difference is more than chance."""
    batch_independent: bool
    """Every hold-out row answered alike alone and inside mixed batches with outliers."""


@dataclass
class BenchResult:
    """Raw measurements; `perfserve.benchmarks.offline.summary` turns them into figures and
    verdicts."""

    plan: BenchPlan
    manifest: Manifest
    holdout: Dataset
    environment: RunEnvironment
    quality: dict[str, VariantQuality]
    loads: dict[str, LoadFigures]
    timings: dict[tuple[str, int], Timings]
    breakdowns: dict[tuple[str, int], Breakdown]
    energy_source: str
    energy_measured: bool
    elapsed_seconds: float = 0.0


def default_specs(
    store: Path, manifest: Manifest, names: list[str] | None = None
) -> list[VariantSpec]:
    """The named variants of the store (all by default), in the store's order."""
    available = list(manifest.variants)
    wanted = names or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise StoreError(f"variant(s) {unknown} are not in the store; it has {available}")
    return [VariantSpec(name, manifest.variants[name], store) for name in wanted]


def run_bench(plan: BenchPlan, manifest: Manifest, say: Say | None = None) -> BenchResult:
    """Measure everything the plan asks for; `say(text)` reports progress (stderr default).

    Thread pools and CPU affinity are pinned for the bench only and restored afterwards.
    """
    plan.check()
    report = say or _stderr
    started = time.perf_counter()
    with pinned(plan.threads, plan.cpus) as pinning:
        holdout = load_holdout(plan.store, manifest)
        report(f"quality of {len(plan.variants)} variant(s) on {len(holdout.target)} hold-out rows")
        runners = {spec.name: _open(plan, manifest, spec) for spec in plan.variants}
        quality = _score_quality(plan, manifest, holdout, runners)
        loads = _load_figures(plan, manifest, holdout, report)
        batches = {size: batch_of(holdout.features, size) for size in plan.batch_sizes}
        meter = EnergyMeter()
        calls = plan.calls_per_run or f">= {plan.min_block_seconds * 1000:g} ms of"
        report(
            f"timing {plan.runs} interleaved runs x {calls} calls per variant and batch size "
            f"{plan.batch_sizes} (warm-up {plan.warmup_calls} calls excluded)"
        )
        timings = time_interleaved(
            runners,
            batches,
            TimingPlan(
                plan.runs,
                plan.calls_per_run,
                plan.warmup_calls,
                plan.batch_sizes,
                plan.min_block_seconds,
            ),
            progress=_progress_printer(report, plan.runs),
            meter=meter,
        )
        report("operator breakdown (onnxruntime profiler / pipeline steps)")
        breakdowns = {
            (spec.name, size): breakdown(
                spec.path, spec.info.format, manifest.task, rows, plan.profile_calls, plan.threads
            )
            for spec in plan.variants
            for size, rows in batches.items()
        }
    description = machine_description()
    environment: RunEnvironment = {
        **pinning,
        "code_revision": code_revision(),
        "machine_fingerprint": machine_fingerprint(description),
        "machine": description,
    }
    return BenchResult(
        plan=plan,
        manifest=manifest,
        holdout=holdout,
        environment=environment,
        quality=quality,
        loads=loads,
        timings=timings,
        breakdowns=breakdowns,
        energy_source=meter.source,
        energy_measured=meter.available,
        elapsed_seconds=time.perf_counter() - started,
    )


def _load_figures(
    plan: BenchPlan, manifest: Manifest, holdout: Dataset, report: Say
) -> dict[str, LoadFigures]:
    loads = {}
    for spec in plan.variants:
        report(f"cold start and memory of {spec.name} in a fresh process")
        loads[spec.name] = measure_load(
            spec.path,
            spec.info.format,
            manifest.task,
            plan.threads,
            holdout.features,
            plan.batch_sizes,
        )
    return loads


def _open(plan: BenchPlan, manifest: Manifest, spec: VariantSpec) -> Runner:
    runner = open_variant(spec.store, spec.info, manifest.task, plan.threads)
    return SlowedRunner(runner, spec.delay_s) if spec.delay_s > 0 else runner


def _score_quality(
    plan: BenchPlan, manifest: Manifest, holdout: Dataset, runners: dict[str, Runner]
) -> dict[str, VariantQuality]:
    """Every variant's hold-out quality as served to single-row requests (each row predicted
    alone, not as one big batch, which would flatter a batch-dependent method), how often
    it answers like the reference, and whether its answers depend on batch-mates."""
    predictions = {
        name: PerRowRunner(runner).predict(holdout.features) for name, runner in runners.items()
    }
    reference = predictions.get(manifest.reference)
    if reference is None:  # the reference is not among the variants benchmarked
        info = manifest.variants[manifest.reference]
        reference = PerRowRunner(open_variant(plan.store, info, manifest.task)).predict(
            holdout.features
        )
    classes = None if manifest.classes is None else np.asarray(manifest.classes)
    quality = {}
    for name, p in predictions.items():
        deviation, changed = mixed_batch_deviation(runners[name], holdout.features)
        quality[name] = VariantQuality(
            quality_metrics(manifest.task, holdout.target, p.labels, p.probabilities, classes),
            agreement(reference.labels, p.labels, manifest.task),
            _row_losses(manifest.task, holdout.target, p.labels),
            deviation <= BATCH_TOLERANCE and changed == 0,
        )
    return quality


def _row_losses(task: str, truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if task == "regression":
        errors: np.ndarray = (labels.astype(float) - truth.astype(float)) ** 2
        return errors
    wrong: np.ndarray = (labels != truth).astype(float)
    return wrong


def _progress_printer(say: Say, total: int) -> Callable[[int, int], None]:
    step = max(1, total // 10)

    def progress(done: int, runs: int) -> None:
        if done == runs or done % step == 0:
            say(f"  run {done}/{runs}")

    return progress


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

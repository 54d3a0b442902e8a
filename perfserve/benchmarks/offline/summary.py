"""From raw measurements to the figures, comparisons and verdicts a bench reports.

Everything downstream (CSV files, plot, report, `decide`, `capacity`, history) reads the
`BenchSummary` built here, which is also written as `summary.json` (its shape:
perfserve/benchmarks/offline/summary_types.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from perfserve.benchmarks.figures import headline_metric, variant_figures
from perfserve.benchmarks.gate.score import best_by_dimension, composite_scores, scoring_weights
from perfserve.benchmarks.offline.bench import BenchResult
from perfserve.benchmarks.offline.precision import fastest_by_batch_size
from perfserve.benchmarks.offline.resources import proxy_joules
from perfserve.benchmarks.offline.summary_types import (
    BatchJson,
    BenchSummary,
    LatencyMs,
    MeasuredVariant,
    QualityComparison,
    SpeedComparison,
    VariantJson,
)
from perfserve.benchmarks.offline.timing import Timings
from perfserve.benchmarks.statistics import (
    ALPHA,
    MIN_EFFECT,
    bootstrap_mean_ci,
    coefficient_of_variation,
    compare_paired,
    mcnemar_p,
    noise_warning,
    wilcoxon_p,
)


def summarize(
    result: BenchResult,
    weights: dict[str, float],
    headline_batch_size: int | None = None,
    min_effect: float = MIN_EFFECT,
) -> BenchSummary:
    """Every figure, comparison, warning and score of a bench, ready to be written as JSON.

    The headline batch size (default: the first benchmarked) is the one the dashboard,
    the composite score and "best" refer to; every batch size keeps all its figures.
    """
    created = datetime.now(UTC).isoformat(timespec="seconds")
    plan, manifest = result.plan, result.manifest
    baseline = plan.baseline or _default_baseline(result)
    headline = headline_batch_size or plan.batch_sizes[0]
    if headline not in plan.batch_sizes:
        raise ValueError(f"headline batch size {headline} is not among {plan.batch_sizes}")
    measured = {spec.name: _variant(result, spec.name) for spec in plan.variants}
    figures = variant_figures(measured, manifest.task, headline)
    used, dropped = scoring_weights(weights, result.energy_measured)
    scores = composite_scores(figures, used)
    variants: dict[str, VariantJson] = {
        name: {**variant, "score": scores[name]} for name, variant in measured.items()
    }
    reference = result.quality.get(manifest.reference)
    return {
        "kind": "bench",
        "created": created,
        "store": str(plan.store),
        "model_name": manifest.model_name,
        "model_version": _model_version(result),
        "task": manifest.task,
        "holdout": {"rows": manifest.holdout.rows, "sha256": manifest.holdout.sha256},
        "environment": {
            **result.environment,
            "energy_source": result.energy_source,
            "energy_measured": result.energy_measured,
        },
        "plan": {
            "variants": [spec.name for spec in plan.variants],
            "batch_sizes": plan.batch_sizes,
            "runs": plan.runs,
            "calls_per_run": plan.calls_per_run or "auto",
            "min_block_seconds": plan.min_block_seconds,
            "warmup_calls": plan.warmup_calls,
            "baseline": baseline,
            "headline_batch_size": headline,
            "weights": used,
            "min_effect": min_effect,
            "elapsed_seconds": round(result.elapsed_seconds, 1),
        },
        "variants": variants,
        "comparisons": _comparisons(result, baseline, min_effect),
        "quality_comparisons": _quality_comparisons(result, baseline),
        "warnings": _warnings(result) + ([dropped] if dropped else []),
        "best": best_by_dimension(figures, scores),
        "fastest_by_batch_size": fastest_by_batch_size(
            measured,
            plan.batch_sizes,
            min_effect,
            reference.metrics if reference else manifest.variants[manifest.reference].metrics,
        ),
    }


def _warnings(result: BenchResult) -> list[str]:
    """Too few runs for any verdict, noisy runs, and answers that depend on batch-mates."""
    plan = result.plan
    noisy = (
        noise_warning(
            spec.name,
            {
                f"batch {size}": result.timings[spec.name, size].run_means
                for size in plan.batch_sizes
            },
        )
        for spec in plan.variants
    )
    warnings = _too_few_runs(plan.runs) + [text for text in noisy if text]
    warnings += [
        f"{name}: a row's answer changes with its batch-mates; the batcher would let one "
        "request change another's answer, so do not serve it whatever its score"
        for name, quality in result.quality.items()
        if not quality.batch_independent
    ]
    return warnings


def _too_few_runs(runs: int) -> list[str]:
    """With n paired runs the smallest two-sided Wilcoxon p is 2 / 2**n."""
    smallest = 2 / 2**runs
    if smallest < ALPHA:
        return []
    return [
        f"{runs} runs cannot show any difference: the smallest possible Wilcoxon p is "
        f"{smallest:.2g} >= {ALPHA}; use --runs 6 or more (30 for the headline comparison)."
    ]


def _model_version(result: BenchResult) -> str:
    """The version benchmarked; a compare across two stores names both, baseline first."""
    versions = dict.fromkeys(spec.info.model_version for spec in result.plan.variants)
    return "+".join(versions)


def _default_baseline(result: BenchResult) -> str:
    names = [spec.name for spec in result.plan.variants]
    return result.manifest.reference if result.manifest.reference in names else names[0]


def _variant(result: BenchResult, name: str) -> MeasuredVariant:
    spec = next(s for s in result.plan.variants if s.name == name)
    load, quality = result.loads[name], result.quality[name]
    return {
        "format": spec.info.format,
        "precision": spec.info.precision,
        "method": spec.info.method,
        "batch_independent": quality.batch_independent,
        "model_version": spec.info.model_version,
        "file_size_bytes": spec.info.file_size_bytes,
        "injected_delay_ms": spec.delay_s * 1000,
        "load_seconds": load.load_seconds,
        "load_memory_bytes": load.load_memory_bytes,
        "quality": quality.metrics,
        "agreement_with_reference": quality.agreement_with_reference,
        "batches": {
            str(size): _cell(result, result.timings[name, size]) for size in result.plan.batch_sizes
        },
    }


def _cell(result: BenchResult, cell: Timings) -> BatchJson:
    size = cell.batch_size
    load = result.loads[cell.variant]
    per_call = _latency(cell.run_means * 1000, cell.calls.ravel() * 1000)
    joules = (
        cell.energy_joules if cell.energy_joules is not None else proxy_joules(cell.cpu_seconds)
    )
    profile = result.breakdowns[cell.variant, size]
    return {
        "per_call_ms": per_call,
        "per_sample_ms": _per_sample(per_call, size),
        "throughput_sps": {
            "mean": size * 1000 / per_call["mean"],
            "ci_low": size * 1000 / per_call["ci_high"],
            "ci_high": size * 1000 / per_call["ci_low"],
        },
        "cold_call_ms": load.cold_call_seconds[size] * 1000,
        "peak_inference_bytes": load.peak_inference_bytes[size],
        "cpu_ms_per_sample": cell.cpu_seconds * 1000 / cell.samples,
        "energy_mj_per_sample": joules * 1000 / cell.samples,
        "calls_per_run": int(cell.calls.shape[1]),
        "run_cv": coefficient_of_variation(cell.run_means),
        "stage_shares": profile.shares(),
        "profiled_us": {op: seconds * 1e6 for op, seconds in profile.operators.items()},
        "run_means_ms": [float(v) for v in cell.run_means * 1000],
    }


def _latency(run_means: np.ndarray, calls: np.ndarray) -> LatencyMs:
    """Mean with a CI over run means; percentiles over every timed call."""
    interval = bootstrap_mean_ci(run_means)
    return {
        "mean": interval.estimate,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "p50": float(np.percentile(calls, 50)),
        "p95": float(np.percentile(calls, 95)),
        "p99": float(np.percentile(calls, 99)),
        "max": float(calls.max()),
    }


def _per_sample(per_call: LatencyMs, size: int) -> LatencyMs:
    """Per-call figures shared among the `size` rows of each call."""
    return {
        "mean": per_call["mean"] / size,
        "ci_low": per_call["ci_low"] / size,
        "ci_high": per_call["ci_high"] / size,
        "p50": per_call["p50"] / size,
        "p95": per_call["p95"] / size,
        "p99": per_call["p99"] / size,
        "max": per_call["max"] / size,
    }


def _comparisons(result: BenchResult, baseline: str, min_effect: float) -> list[SpeedComparison]:
    rows: list[SpeedComparison] = []
    for (name, size), cell in result.timings.items():
        if name == baseline:
            continue
        base = result.timings[baseline, size]
        comparison = compare_paired(base.run_means * 1000, cell.run_means * 1000, min_effect)
        rows.append(
            {
                "batch_size": size,
                "baseline": baseline,
                "candidate": name,
                "metric": "per_call_ms",
                "baseline_mean": comparison.baseline_mean,
                "candidate_mean": comparison.candidate_mean,
                "difference": comparison.difference.estimate,
                "ci_low": comparison.difference.low,
                "ci_high": comparison.difference.high,
                "relative": comparison.relative,
                "cohens_d": comparison.cohens_d,
                "p_value": comparison.p_value,
                "test": "Wilcoxon signed-rank, paired by run",
                "verdict": comparison.verdict,
            }
        )
    return rows


def _quality_comparisons(result: BenchResult, baseline: str) -> list[QualityComparison]:
    """Per-row losses paired on the hold-out: McNemar for labels, Wilcoxon for errors."""
    task = result.manifest.task
    metric = headline_metric(task)
    base = result.quality[baseline]
    rows: list[QualityComparison] = []
    for name, quality in result.quality.items():
        if name == baseline:
            continue
        if task == "classification":
            p_value, test = mcnemar_p(base.row_losses, quality.row_losses), "exact McNemar"
        else:
            p_value, test = (
                wilcoxon_p(base.row_losses, quality.row_losses),
                "Wilcoxon on squared errors",
            )
        rows.append(
            {
                "baseline": baseline,
                "candidate": name,
                "metric": metric,
                "baseline_value": base.metrics[metric],
                "candidate_value": quality.metrics[metric],
                "difference": quality.metrics[metric] - base.metrics[metric],
                "p_value": p_value,
                "test": test,
                "verdict": _quality_verdict(
                    quality.row_losses.mean() - base.row_losses.mean(), p_value
                ),
                "agreement_with_reference": quality.agreement_with_reference,
            }
        )
    return rows


def _quality_verdict(loss_difference: float, p_value: float) -> str:
    if p_value >= ALPHA or loss_difference == 0:
        return "no detectable difference"
    return "worse" if loss_difference > 0 else "better"

"""Everything a bench writes into its output folder, and the short report a person reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from perfserve.benchmarks.figures import SUMMARY_FILE, figures_from_summary
from perfserve.benchmarks.gate.score import DIMENSIONS, normalized
from perfserve.benchmarks.offline.plot import plot_tradeoffs
from perfserve.benchmarks.offline.precision import render as render_precision_table
from perfserve.benchmarks.offline.summary_types import (
    BatchJson,
    BenchSummary,
    PlanJson,
    VariantJson,
)

FILES = {
    "summary": "summary.csv",
    "comparisons": "comparisons.csv",
    "tradeoffs": "tradeoffs.csv",
    "operators": "operators.csv",
    "dashboard": "dashboard.csv",
    "plot": "tradeoffs.png",
    "report": "report.md",
}
CsvRow = dict[str, object]
"""One row of a CSV file: column name to value, in the columns' order."""


def write_outputs(summary: BenchSummary, out: Path) -> dict[str, Path]:
    """Write every output file of a bench; return their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in FILES.items()} | {"json": out / SUMMARY_FILE}
    paths["json"].write_text(json.dumps(summary, indent=2))
    _write_csv(paths["summary"], summary_rows(summary))
    _write_csv(paths["comparisons"], comparison_rows(summary))
    _write_csv(paths["tradeoffs"], tradeoff_rows(summary))
    _write_csv(paths["operators"], operator_rows(summary))
    _write_csv(paths["dashboard"], dashboard_rows(summary))
    plot_tradeoffs(summary, paths["plot"])
    paths["report"].write_text(render_report(summary))
    return paths


def _write_csv(path: Path, rows: list[CsvRow]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)


def _cells(summary: BenchSummary) -> list[tuple[str, int, VariantJson, BatchJson]]:
    return [
        (name, int(size), variant, cell)
        for name, variant in summary["variants"].items()
        for size, cell in variant["batches"].items()
    ]


def summary_rows(summary: BenchSummary) -> list[CsvRow]:
    """Per variant and batch size: latency and throughput with 95% CIs, and quality."""
    rows = []
    for name, size, variant, cell in _cells(summary):
        row: CsvRow = {"variant": name, "batch_size": size}
        for key, value in cell["per_call_ms"].items():
            row[f"per_call_ms_{key}"] = value
        for key, value in cell["per_sample_ms"].items():
            row[f"per_sample_ms_{key}"] = value
        for key, value in cell["throughput_sps"].items():
            row[f"throughput_sps_{key}"] = value
        row["cold_call_ms"] = cell["cold_call_ms"]
        row["calls_per_run"] = cell["calls_per_run"]
        row["run_cv"] = cell["run_cv"]
        row |= variant["quality"]
        row["agreement_with_reference"] = variant["agreement_with_reference"]
        rows.append(row)
    return rows


def comparison_rows(summary: BenchSummary) -> list[CsvRow]:
    """Latency comparisons (paired by run) and quality comparisons (paired by row)."""
    rows = [dict(row) for row in summary["comparisons"]]
    for quality in summary["quality_comparisons"]:
        rows.append(
            {
                "batch_size": "",
                "baseline": quality["baseline"],
                "candidate": quality["candidate"],
                "metric": quality["metric"],
                "baseline_mean": quality["baseline_value"],
                "candidate_mean": quality["candidate_value"],
                "difference": quality["difference"],
                "ci_low": "",
                "ci_high": "",
                "relative": "",
                "cohens_d": "",
                "p_value": quality["p_value"],
                "test": quality["test"],
                "verdict": quality["verdict"],
            }
        )
    return rows


def tradeoff_rows(summary: BenchSummary) -> list[CsvRow]:
    """Latency, memory, throughput, energy and where the time goes, side by side."""
    rows = []
    for name, size, variant, cell in _cells(summary):
        row: CsvRow = {
            "variant": name,
            "batch_size": size,
            "per_call_ms_mean": cell["per_call_ms"]["mean"],
            "per_call_ms_p95": cell["per_call_ms"]["p95"],
            "per_sample_ms_mean": cell["per_sample_ms"]["mean"],
            "throughput_sps": cell["throughput_sps"]["mean"],
            "file_size_bytes": variant["file_size_bytes"],
            "load_memory_bytes": variant["load_memory_bytes"],
            "peak_inference_bytes": cell["peak_inference_bytes"],
            "cpu_ms_per_sample": cell["cpu_ms_per_sample"],
            "energy_mj_per_sample": cell["energy_mj_per_sample"],
            "energy_measured": summary["environment"]["energy_measured"],
        }
        row |= {f"{stage}_share": share for stage, share in cell["stage_shares"].items()}
        rows.append(row)
    return rows


def operator_rows(summary: BenchSummary) -> list[CsvRow]:
    rows = []
    for name, size, _, cell in _cells(summary):
        total = sum(cell["profiled_us"].values()) or 1.0
        for key, micros in cell["profiled_us"].items():
            stage, operator = key.split("/", 1)
            rows.append(
                {
                    "variant": name,
                    "batch_size": size,
                    "stage": stage,
                    "operator": operator,
                    "profiled_us_per_call": micros,
                    "share_of_kernels": micros / total,
                }
            )
    return rows


def dashboard_rows(summary: BenchSummary) -> list[CsvRow]:
    """At the headline batch size: raw figures, their 0..1 standing, weights and score."""
    figures = figures_from_summary(summary)
    weights = summary["plan"]["weights"]
    standing = {d: normalized(figures, d) for d in DIMENSIONS}
    ranked = sorted(figures, key=lambda f: -summary["variants"][f.variant]["score"])
    rows = []
    for rank, f in enumerate(ranked, start=1):
        row: CsvRow = {
            "rank": rank,
            "variant": f.variant,
            "batch_size": f.batch_size,
            f.quality_metric: f.quality,
            "latency_ms": f.mean_ms,
            "memory_bytes": f.memory_bytes,
            "energy_mj_per_sample": f.energy_mj_per_sample,
        }
        row |= {f"{d}_standing": standing[d][f.variant] for d in DIMENSIONS}
        row |= {f"{d}_weight": weights[d] for d in DIMENSIONS}
        row["score"] = summary["variants"][f.variant]["score"]
        rows.append(row)
    return rows


def render_report(summary: BenchSummary) -> str:
    """A page a person reads first: the answer, then the evidence and the caveats."""
    plan, env, best = summary["plan"], summary["environment"], summary["best"]
    figures = figures_from_summary(summary)
    lines = [
        f"# Benchmark of {summary['model_name']} ({summary['model_version']})",
        "",
        f"Best overall (composite score, weights {_weights(plan['weights'])}): "
        f"**{' = '.join(best['overall'])}**. Best by dimension: "
        + ", ".join(f"{d} {' = '.join(best[d])}" for d in best if d != "overall")
        + ".",
        "",
        f"Hold-out {summary['holdout']['rows']} rows; {plan['runs']} interleaved runs per "
        f"variant and batch size, {_calls(plan)} calls each, {plan['warmup_calls']} "
        f"warm-up calls excluded; {env['threads']} thread(s), CPUs {env['cpu_affinity']}"
        f"{' (pinned)' if env['cpus_pinned'] else ''}; code {env['code_revision'][:12]}, "
        f"machine {env['machine_fingerprint']}.",
        "",
        f"## At batch size {plan['headline_batch_size']}",
        "",
        f"| variant | {figures[0].quality_metric} | ms per call (95% CI) | p99 ms | samples/s "
        "| memory MiB | energy mJ/sample | score |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        cell = summary["variants"][f.variant]["batches"][str(f.batch_size)]["per_call_ms"]
        lines.append(
            f"| {f.variant} | {f.quality:.4f} | {f.mean_ms:.4f} ({cell['ci_low']:.4f}-"
            f"{cell['ci_high']:.4f}) | {f.p99_ms:.4f} | {f.throughput_sps:,.0f} | "
            f"{f.memory_bytes / 2**20:.2f} | {f.energy_mj_per_sample:.4f} | "
            f"{summary['variants'][f.variant]['score']:.3f} |"
        )
    lines += [
        "",
        "## Fastest precision and method per batch size",
        "",
        "Median µs per call over the runs; `*` fastest among variants of equal quality "
        "(within the build's bounds) whose answers do not depend on batch-mates; `~` within "
        "noise of it (paired run by run, median ratio under 1 + min effect); `q` quality "
        "outside the bounds; `b` answers change with batch-mates (never served).",
        "",
        *render_precision_table(summary["fastest_by_batch_size"]),
    ]
    lines += ["", f"## Against {plan['baseline']}", ""]
    if not summary["comparisons"]:
        lines.append("- only one variant was benchmarked: nothing to compare")
    for c in summary["comparisons"]:
        lines.append(
            f"- batch {c['batch_size']}: {c['candidate']} is **{c['verdict']}** "
            f"({c['relative']:+.1%}, difference {c['difference']:+.4f} ms, 95% CI "
            f"{c['ci_low']:+.4f} to {c['ci_high']:+.4f}; d = {c['cohens_d']:.2f}, "
            f"p = {c['p_value']:.2g})"
        )
    for q in summary["quality_comparisons"]:
        lines.append(
            f"- {q['metric']}: {q['candidate']} {q['candidate_value']:.4f} vs "
            f"{q['baseline_value']:.4f}, {q['verdict']} ({q['test']}, p = {q['p_value']:.2g}); "
            f"agrees with the reference on {q['agreement_with_reference']:.1%} of rows"
        )
    lines += ["", "## Caveats", "", f"- Energy: {env['energy_source']}."]
    lines.append(
        f"- A verdict needs the whole 95% CI of the difference past {plan['min_effect']:.0%} "
        "of the baseline; anything less counts as no difference."
    )
    lines += [f"- {warning}" for warning in summary["warnings"]]
    return "\n".join(lines) + "\n"


def _calls(plan: PlanJson) -> str:
    if plan["calls_per_run"] == "auto":
        return f"enough for {plan['min_block_seconds'] * 1000:g} ms"
    return str(plan["calls_per_run"])


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in weights.items() if value)

"""The trade-off picture: latency against quality, point size by memory; and throughput by
batch size, which shows where batching stops paying."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullLocator

from perfserve.benchmarks.figures import figures_from_summary
from perfserve.benchmarks.offline.summary_types import BenchSummary

PLAIN = FuncFormatter(lambda value, _: f"{value:,.6g}")
"""Log-axis tick labels as plain numbers (20,000, 0.05), not powers of ten."""


def plot_tradeoffs(summary: BenchSummary, path: Path) -> None:
    figures = figures_from_summary(summary)
    batch = summary["plan"]["headline_batch_size"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    largest = max(f.memory_bytes for f in figures) or 1
    sizes = sorted(int(size) for size in summary["plan"]["batch_sizes"])
    for index, f in enumerate(figures):
        cell = summary["variants"][f.variant]["batches"][str(batch)]["per_call_ms"]
        color = f"C{index}"
        left.errorbar(
            f.mean_ms,
            f.quality,
            xerr=[[f.mean_ms - cell["ci_low"]], [cell["ci_high"] - f.mean_ms]],
            fmt="none",
            ecolor=color,
            capsize=3,
        )
        left.scatter(
            f.mean_ms,
            f.quality,
            s=80 + 900 * f.memory_bytes / largest,
            color=color,
            alpha=0.6,
            edgecolors="black",
            label=f"{f.variant} ({memory_text(f.memory_bytes)})",
        )
        throughput = [
            summary["variants"][f.variant]["batches"][str(size)]["throughput_sps"]["mean"]
            for size in sizes
        ]
        right.plot(sizes, throughput, marker="o", color=color, label=f.variant)
    metric = figures[0].quality_metric
    left.set_xscale("log")
    left.xaxis.set_major_formatter(PLAIN)
    left.set_xlabel(f"latency per call at batch {batch}, ms (mean, 95% CI; log scale)")
    left.set_ylabel(f"hold-out {metric}")
    left.set_title("Latency vs quality (point area: memory, load + peak per call)")
    # Variants often sit on top of each other (same quality, similar latency), where labels
    # beside the points would overlap: the legend names them by colour instead.
    left.legend(loc="best", fontsize="small", markerscale=0.4)
    left.margins(0.25)
    # Ticks at the batch sizes measured, as plain numbers: a base-2 log axis would label
    # its own powers of two (and repeat them when a few sizes span a short range).
    right.set_xscale("log")
    right.set_xticks(sizes, [str(size) for size in sizes])
    right.xaxis.set_minor_locator(NullLocator())
    right.set_yscale("log")
    right.yaxis.set_major_formatter(PLAIN)
    right.set_xlabel("batch size (rows per call)")
    right.set_ylabel("throughput, samples/s (one runner)")
    right.set_title("Throughput by batch size")
    right.legend(loc="best", fontsize="small")
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{summary['model_name']} on {summary['holdout']['rows']} hold-out rows")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_text(size_bytes: float) -> str:
    """Bytes in the unit that fits: `640 B`, `8.4 kB`, `12.3 MB`, `1.2 GB` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes:.0f} B"

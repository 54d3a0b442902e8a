"""One row of figures per variant: what the dashboard, `decide` and `capacity` work from.

A bench's `summary.json` holds every batch size; these rows pick one, so hand-made tables
(in tests, or from another tool) go through exactly the same decisions as a real bench.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfserve_common.usage import UsageError

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class VariantFigures:
    variant: str
    batch_size: int
    quality_metric: str
    """"accuracy" for a classifier (higher is better), "rmse" for a regressor (lower)."""
    quality: float
    mean_ms: float
    """Mean latency per call at `batch_size`."""
    p95_ms: float
    p99_ms: float
    throughput_sps: float
    """Samples (rows) per second, one runner, calls back to back."""
    memory_bytes: int
    """Memory taken by loading plus the peak one call needs."""
    energy_mj_per_sample: float
    file_size_bytes: int
    load_memory_bytes: int = 0
    peak_inference_bytes: int = 0

    @property
    def quality_higher_is_better(self) -> bool:
        return self.quality_metric != "rmse"


def headline_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "rmse"


def load_summary(folder: Path) -> dict[str, Any]:
    """A bench's summary.json, with an error that says how to make one."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise UsageError(
            f"no bench results at {folder} (missing {SUMMARY_FILE}); run `perfserve bench`"
        )
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


def figures_from_summary(
    summary: dict[str, Any], batch_size: int | None = None
) -> list[VariantFigures]:
    """Rows at `batch_size` (default: the bench's headline batch size)."""
    size = batch_size or summary["plan"]["headline_batch_size"]
    metric = headline_metric(summary["task"])
    rows = []
    for name, variant in summary["variants"].items():
        cell = variant["batches"].get(str(size))
        if cell is None:
            measured = ", ".join(variant["batches"])
            raise UsageError(f"batch size {size} was not benchmarked (measured: {measured})")
        rows.append(
            VariantFigures(
                variant=name,
                batch_size=size,
                quality_metric=metric,
                quality=variant["quality"][metric],
                mean_ms=cell["per_call_ms"]["mean"],
                p95_ms=cell["per_call_ms"]["p95"],
                p99_ms=cell["per_call_ms"]["p99"],
                throughput_sps=cell["throughput_sps"]["mean"],
                memory_bytes=variant["load_memory_bytes"] + cell["peak_inference_bytes"],
                energy_mj_per_sample=cell["energy_mj_per_sample"],
                file_size_bytes=variant["file_size_bytes"],
                load_memory_bytes=variant["load_memory_bytes"],
                peak_inference_bytes=cell["peak_inference_bytes"],
            )
        )
    return rows

"""One row of figures per variant: what the dashboard, `decide` and `capacity` work from.

A bench's `summary.json` holds every batch size; these rows pick one, so hand-made tables
(in tests, or from another tool) go through exactly the same decisions as a real bench.
`load_summary` is how every reader gets a summary.json back (`parse_summary` when it sits
inside a history record), typed as perfserve/benchmarks/offline/summary_types.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from perfserve.benchmarks.offline.summary_types import BenchSummary, MeasuredVariant
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


def load_summary(folder: Path) -> BenchSummary:
    """A bench's summary.json, with an error that says how to make one."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise UsageError(
            f"no bench results at {folder} (missing {SUMMARY_FILE}); run `perfserve bench`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not JSON ({error}); run `perfserve bench`") from None
    return parse_summary(data, str(path))


def parse_summary(data: object, origin: str) -> BenchSummary:
    """`data`, read from JSON, as a bench's summary: the one check every reader shares (a
    sweep's summary.json, say, is refused in one line rather than failing on a missing
    key). Summaries of older versions keep their fields: what they lack, readers `.get`."""
    if (
        isinstance(data, dict)
        and data.get("kind") == "bench"
        and isinstance(data.get("variants"), dict)
    ):
        return cast(BenchSummary, data)
    raise UsageError(f'{origin} is not a bench\'s summary (kind "bench" with variants)')


def figures_from_summary(
    summary: BenchSummary, batch_size: int | None = None
) -> list[VariantFigures]:
    """Rows at `batch_size` (default: the bench's headline batch size)."""
    size = batch_size or summary["plan"]["headline_batch_size"]
    return variant_figures(summary["variants"], summary["task"], size)


def variant_figures(
    variants: Mapping[str, MeasuredVariant], task: str, batch_size: int
) -> list[VariantFigures]:
    """Rows at `batch_size` from the variants as measured (scored or not yet)."""
    metric = headline_metric(task)
    rows = []
    for name, variant in variants.items():
        cell = variant["batches"].get(str(batch_size))
        if cell is None:
            measured = ", ".join(variant["batches"])
            raise UsageError(f"batch size {batch_size} was not benchmarked (measured: {measured})")
        rows.append(
            VariantFigures(
                variant=name,
                batch_size=batch_size,
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

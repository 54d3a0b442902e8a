"""Options and steps that bench and compare share: what to time, how, and where to record."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from perfserve_common.usage import UsageError, add_option

# Where bench and compare record their results, and where `perfserve history` reads them.
DEFAULT_HISTORY = Path("reports/history")

if TYPE_CHECKING:
    from perfserve.benchmarks.gate.history import GateVerdict
    from perfserve.benchmarks.offline.bench import VariantSpec
    from perfserve.benchmarks.offline.summary_types import BenchSummary
    from service.store import Manifest


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def delays(text: str) -> dict[str, float]:
    """`onnx_int8=5,onnx_fp32=1` -> seconds of injected latency per variant."""
    found = {}
    for part in name_list(text):
        name, _, millis = part.partition("=")
        try:
            found[name] = float(millis) / 1000
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not VARIANT=MILLISECONDS") from None
    return found


def add_measurement_options(parser: argparse.ArgumentParser, runs: int, batch_sizes: str) -> None:
    """Options bench and compare share: what to time and how."""
    add_option(
        parser, "--store", type=Path, default=Path("model_store"), help="Model store to measure."
    )
    add_option(
        parser,
        "--batch-sizes",
        type=int_list,
        default=batch_sizes,
        help="Rows per call, 1 to 1024, comma-separated.",
    )
    add_option(
        parser,
        "--runs",
        type=int,
        default=runs,
        help="Interleaved runs per variant and batch size.",
    )
    add_option(
        parser,
        "--calls-per-run",
        type=int,
        help="Timed calls per run (default: as many as fill --min-block-ms).",
    )
    add_option(
        parser,
        "--min-block-ms",
        type=float,
        default=10.0,
        help="Without --calls-per-run: each run is a block of calls lasting at least this many ms.",
    )
    add_option(parser, "--warmup", type=int, default=5, help="Untimed calls before timing starts.")
    add_option(
        parser, "--threads", type=int, default=1, help="Threads onnxruntime and BLAS may use."
    )
    add_option(
        parser,
        "--bench-cpus",
        renamed_from="--cpus",
        type=int_list,
        help="Pin the bench to these CPUs, e.g. 1 (default: not pinned).",
    )
    add_option(
        parser,
        "--min-effect",
        type=float,
        default=0.05,
        help="Smallest relative difference called faster or slower (by its whole 95%% CI).",
    )
    add_option(
        parser,
        "--history",
        type=Path,
        default=DEFAULT_HISTORY,
        help="Folder where results are recorded and checked for regressions.",
    )
    add_option(
        parser, "--mlflow-uri", help="Also log the run to MLflow at this URI, e.g. file:./mlruns."
    )


def measure(
    args: argparse.Namespace,
    manifest: Manifest,
    specs: list[VariantSpec],
    baseline: str | None,
    weights: dict[str, float],
    headline_batch_size: int | None,
) -> BenchSummary:
    """Run the bench the options describe and summarize it."""
    from perfserve.benchmarks.offline.bench import BenchPlan, run_bench
    from perfserve.benchmarks.offline.summary import summarize

    plan = BenchPlan(
        store=args.store,
        variants=specs,
        batch_sizes=args.batch_sizes,
        runs=args.runs,
        calls_per_run=args.calls_per_run,
        min_block_seconds=args.min_block_ms / 1000,
        warmup_calls=args.warmup,
        threads=args.threads,
        cpus=args.bench_cpus,
        baseline=baseline,
    )
    try:
        plan.check()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if headline_batch_size is not None and headline_batch_size not in plan.batch_sizes:
        raise UsageError(
            f"headline batch size {headline_batch_size} is not among {plan.batch_sizes}"
        )
    return summarize(run_bench(plan, manifest), weights, headline_batch_size, args.min_effect)


def record(
    args: argparse.Namespace,
    kind: str,
    summary: BenchSummary,
    files: list[Path],
    accepted: bool = True,
    extra: GateVerdict | None = None,
) -> bool:
    """Keep the result in the history and, if asked, in MLflow; False if it regressed."""
    from perfserve.benchmarks.gate import history

    found = history.record(args.history, kind, summary, accepted, extra)
    data = found.data
    if data["baseline_id"] is None:
        print(f"recorded {found.id} in {args.history} (first on this machine: the baseline)")
    elif data["regressions"]:
        print(f"REGRESSION against {data['baseline_id']} (record {found.id} not accepted):")
        print("\n".join(f"  - {text}" for text in data["regressions"]))
    else:
        print(f"recorded {found.id}; no regression against {data['baseline_id']}")
    if args.mlflow_uri:
        from perfserve.benchmarks.offline.tracking import log_run

        run_id = log_run(args.mlflow_uri, kind, summary, files)
        print(f"logged to MLflow at {args.mlflow_uri}: run {run_id}")
    return not data["regressions"]

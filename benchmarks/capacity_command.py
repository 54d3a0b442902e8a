"""`perfserve capacity`: replicas for a peak load, from a bench's throughput or a sweep's knee."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.usage import UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_capacity_arguments(capacity: argparse.ArgumentParser) -> None:
    capacity.description = (
        "From a peak QPS, a safety factor and each variant's measured capacity "
        "(bench throughput, or a sweep's knee), plan replicas with an M/M/c queue (Erlang C) "
        "and Little's law."
    )
    add_option(capacity, "--peak-qps", type=float, required=True, help="expected peak requests/s")
    add_option(capacity, "--bench", type=Path, help="bench folder (throughput, memory, size)")
    add_option(capacity, "--sweep", type=Path, help="sweep folder (knee QPS per variant)")
    add_option(capacity, "--safety-factor", type=float, default=1.5, help="headroom on the peak")
    add_option(capacity, "--target-utilization", type=float, default=0.7, help="per replica, 0..1")
    add_option(capacity, "--batch-size", type=int, help="bench batch size to plan with")
    add_option(capacity, "--rows-per-request", type=int, default=1, help="rows in one request")
    add_option(
        capacity,
        "--request-overhead-ms",
        type=float,
        default=0.0,
        help="with --bench: per-request cost outside the model (HTTP, parsing), e.g. 0.15",
    )
    add_option(
        capacity,
        "--trough-qps",
        type=float,
        help="quietest expected requests/s: may raise the autoscaler's minimum replicas",
    )
    add_option(capacity, "--memory-budget-mb", type=float, help="memory of one replica")
    add_option(capacity, "--storage-budget-mb", type=float, help="disk for model artifacts")
    capacity.set_defaults(run=run_capacity_command)


def run_capacity_command(args: argparse.Namespace) -> int:
    from benchmarks.autoscaling import render_bounds, replica_bounds
    from benchmarks.capacity import from_bench, from_sweep, plan_capacity, render_plans
    from benchmarks.figures import load_summary

    if args.bench is None and args.sweep is None:
        args.bench = Path("reports/bench")
    if args.rows_per_request < 1 or args.request_overhead_ms < 0:
        raise UsageError("--rows-per-request must be at least 1, --request-overhead-ms >= 0")
    if args.trough_qps is not None and not 0 < args.trough_qps <= args.peak_qps:
        raise UsageError("--trough-qps must be positive and at most --peak-qps")
    bench = (
        from_bench(
            load_summary(args.bench),
            args.batch_size,
            args.rows_per_request,
            args.request_overhead_ms / 1000,
        )
        if args.bench
        else []
    )
    figures, notes = bench, list[str]()
    if args.sweep is not None:
        figures, notes = from_sweep(_read_sweep(args.sweep), bench)
    if not figures:
        raise UsageError("no variant has a measured capacity: " + "; ".join(notes))
    try:
        plans = [
            plan_capacity(
                f,
                args.peak_qps,
                args.safety_factor,
                args.target_utilization,
                _mib(args.memory_budget_mb),
                _mib(args.storage_budget_mb),
            )
            for f in figures
        ]
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(render_plans(plans, args.peak_qps, args.safety_factor, args.target_utilization))
    bounds = [replica_bounds(p, args.target_utilization, args.trough_qps) for p in plans]
    print(render_bounds(bounds))
    print("\n".join(notes))
    return 0


def _read_sweep(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    if not path.is_file():
        raise UsageError(
            f"no sweep results at {folder} (missing summary.json); run `perfserve sweep`"
        )
    sweep: dict[str, Any] = json.loads(path.read_text())
    if "slo_p99_ms" not in sweep or not isinstance(sweep.get("variants"), dict):
        raise UsageError(f"{path} lacks slo_p99_ms or variants: not a sweep summary")
    return sweep


def _mib(value: float | None) -> int | None:
    return None if value is None else int(value * 2**20)

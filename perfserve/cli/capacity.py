"""`perfserve capacity`: replicas for a peak load, from a bench's throughput or a sweep's knee."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfserve_common.usage import UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    from perfserve.benchmarks.offline.summary_types import BenchSummary

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(capacity: argparse.ArgumentParser) -> None:
    capacity.description = (
        "From a peak QPS, a safety factor and each variant's measured capacity "
        "(a sweep's knee, measured through HTTP; or the bench's model time plus what HTTP "
        "adds to each request), plan replicas with an M/M/c queue (Erlang C) and Little's "
        "law. Planning from a bench without --request-overhead-ms first measures that "
        "overhead with a short probe of a real `perfserve serve` on a loopback port."
    )
    add_option(
        capacity, "--peak-qps", type=float, required=True, help="Expected peak, in requests/s."
    )
    add_option(
        capacity,
        "--bench",
        type=Path,
        help="Folder of a `perfserve bench` run: model time, memory, size "
        "(default: reports/bench, unless --sweep is given).",
    )
    add_option(
        capacity, "--sweep", type=Path, help="Folder of a `perfserve sweep` run: knee per variant."
    )
    add_option(
        capacity,
        "--safety-factor",
        type=float,
        default=1.5,
        help="Headroom: the plan is for the peak times this.",
    )
    add_option(
        capacity,
        "--target-utilization",
        type=float,
        default=0.7,
        help="Busy share of each replica to plan for, between 0 and 1.",
    )
    add_option(
        capacity,
        "--batch-size",
        type=int,
        help="Bench batch size whose throughput is the model time (default: the bench's "
        "headline batch size).",
    )
    add_option(capacity, "--rows-per-request", type=int, default=1, help="Rows in one request.")
    add_option(
        capacity,
        "--request-overhead-ms",
        type=float,
        help="With a bench: what one request costs a replica outside the model (HTTP, "
        "parsing, routing), in ms, e.g. from `perfserve bench-http` (default: measured by "
        "a probe).",
    )
    add_option(
        capacity,
        "--store",
        type=Path,
        help="Model store the probe serves (default: the store the bench measured).",
    )
    add_option(capacity, "--memory-budget-mb", type=float, help="Memory of one replica, in MiB.")
    add_option(
        capacity,
        "--storage-budget-mb",
        type=float,
        help="Disk for model artifacts, in MiB.",
    )
    add_option(
        capacity,
        "--trough-qps",
        type=float,
        help="Quietest expected requests/s: it may raise the autoscaler's minimum replicas.",
    )
    capacity.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.capacity.autoscaling import render_bounds, replica_bounds
    from perfserve.benchmarks.capacity.capacity import (
        from_bench,
        from_sweep,
        plan_capacity,
        render_plans,
    )
    from perfserve.benchmarks.figures import load_summary

    if args.bench is None and args.sweep is None:
        args.bench = Path("reports/bench")
    if args.rows_per_request < 1:
        raise UsageError(f"--rows-per-request {args.rows_per_request}: must be at least 1")
    if args.request_overhead_ms is not None and args.request_overhead_ms < 0:
        raise UsageError(f"--request-overhead-ms {args.request_overhead_ms:g}: must be >= 0")
    if args.trough_qps is not None and not 0 < args.trough_qps <= args.peak_qps:
        raise UsageError(
            f"--trough-qps {args.trough_qps:g}: must be positive and at most --peak-qps"
        )
    bench, notes = [], list[str]()
    if args.bench:
        summary = load_summary(args.bench)
        used = "memory and size" if args.sweep else "model time, memory and size"
        notes.append(
            f"{used} from the bench in {args.bench} (run {summary.get('created', '?')}, "
            f"model {summary['model_version']})"
        )
        # A sweep's knees already include HTTP: the bench then gives memory and size only.
        overhead, source = (0.0, "unused") if args.sweep else _overhead(args, summary, notes)
        bench = from_bench(summary, args.batch_size, args.rows_per_request, overhead, source)
    figures = bench
    if args.sweep is not None:
        figures, knee_notes = from_sweep(_read_sweep(args.sweep), bench)
        if not figures:
            raise UsageError("no variant has a measured capacity: " + "; ".join(knee_notes))
        notes = [f"service rates from the sweep knees in {args.sweep}", *notes, *knee_notes]
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
    notes.append(
        f"assumed: Poisson arrivals and exponential service times (M/M/c), "
        f"{args.rows_per_request} row(s) per request, each replica one `perfserve serve` "
        "process as measured"
    )
    print("\n".join(notes))
    return 0


def _overhead(
    args: argparse.Namespace, summary: BenchSummary, notes: list[str]
) -> tuple[float | dict[str, float], str]:
    """What HTTP adds to each request: given, or measured now; never silently zero."""
    if args.request_overhead_ms is not None:
        notes.append(
            f"HTTP overhead {args.request_overhead_ms:g} ms/request from --request-overhead-ms"
        )
        return args.request_overhead_ms / 1000, "--request-overhead-ms"
    import httpx

    from perfserve.benchmarks.capacity.http_probe import probe_overhead
    from perfserve.benchmarks.figures import figures_from_summary
    from service.store import StoreError

    store = args.store or Path(summary["store"])
    variants = [f.variant for f in figures_from_summary(summary, args.batch_size)]
    print(
        f"measuring what HTTP adds per request: a short probe of `perfserve serve` on {store} "
        "(--request-overhead-ms or --sweep skip it) ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        probes = probe_overhead(store, variants, args.rows_per_request)
    except (StoreError, RuntimeError, OSError, httpx.HTTPError) as error:
        first = str(error).splitlines()[0]
        raise UsageError(
            f"planning from a bench needs what HTTP adds to each request, and the probe of "
            f"{store} failed ({first}); give --request-overhead-ms MS, or --sweep DIR"
        ) from None
    notes += [f"{name}: {probe.describe()}" for name, probe in probes.items()]
    notes.append(
        "the probe's requests come one at a time, so none are batched: under load a replica "
        "spends less per request, and a sweep (--sweep) measures that directly"
    )
    return {name: probe.overhead_s for name, probe in probes.items()}, "probe"


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

"""`perfserve bench-overload`: goodput at three times capacity under open-loop arrivals, and the
cost of a refusal."""

from __future__ import annotations

import argparse
from pathlib import Path

from perfserve.benchmarks.http.http_overhead import (
    add_pinned_bench_options,
)
from perfserve.benchmarks.overload.overload import (
    CAPACITIES,
    LOAD_BALANCERS,
    Case,
    parse_case,
    run_overload,
)
from perfserve.benchmarks.overload.overload_load import (
    GENERATORS,
)
from perfserve_common.slo import SLO_P99_MS
from perfserve_common.usage import RawDescriptionHelpFormatter, UsageError, add_option


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = __doc__
    bench.formatter_class = RawDescriptionHelpFormatter
    add_pinned_bench_options(bench, Path("reports/bench-overload"), "wrk and the generator")
    add_option(
        bench,
        "--case",
        type=parse_case,
        action="append",
        metavar="VARIANT[:MAX_BATCH_SIZE]",
        help="A variant and its batch size; repeat for several (default: sklearn_fp32:1 and "
        "onnx_int8:64).",
    )
    add_option(
        bench,
        "--generator",
        choices=GENERATORS,
        default="k6",
        help="What offers the load: k6 (sees headers) or h2load (ten times k6's rate).",
    )
    add_option(
        bench,
        "--load-balancer",
        choices=LOAD_BALANCERS,
        default="none",
        help="Load the replica directly, or through the stack's nginx (on --generator-cpus), "
        "which may shed itself: limit-conn admits as many requests at once as capacity "
        "was measured with, limit-req capacity's rate.",
    )
    add_option(
        bench,
        "--capacity",
        choices=CAPACITIES,
        default="wrk",
        help="What the offered load and goodput are measured against: wrk's most at 64 "
        "connections, or the sweep's knee at --slo-p99-ms (the most within the SLO).",
    )
    add_option(
        bench,
        "--slo-p99-ms",
        type=float,
        default=SLO_P99_MS,
        help="With --capacity knee: the SLO the knee holds.",
    )
    add_option(bench, "--factor", type=float, default=3.0, help="Offered load over capacity.")
    add_option(
        bench, "--vus", type=int, default=1000, help="Most connections the generator may hold."
    )
    add_option(bench, "--max-queue", type=int, default=1024, help="The server's --max-queue.")
    add_option(bench, "--seconds", type=float, default=5.0, help="Length of each wrk measurement.")
    add_option(bench, "--rounds", type=int, default=3, help="Rounds of the refusal cost.")
    add_option(
        bench,
        "--repeats",
        type=int,
        default=1,
        help="Capacity and overload runs per case, each on a fresh server; medians shown.",
    )
    add_option(
        bench, "--quiet-seconds", type=int, default=5, help="Seconds at half capacity before."
    )
    add_option(bench, "--overload-seconds", type=int, default=10, help="Seconds of overload.")
    add_option(
        bench, "--after-seconds", type=int, default=8, help="Seconds at half capacity after."
    )
    add_option(
        bench,
        "--baseline",
        type=Path,
        help="Also measure the refusal cost of another checkout of perfserve.",
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.baseline is not None and not (args.baseline / "service").is_dir():
        raise UsageError(f"--baseline: {args.baseline} is not a checkout of perfserve")
    positive = ("factor", "vus", "max_queue", "seconds", "rounds", "repeats", "overload_seconds")
    for option in (*positive, "slo_p99_ms"):
        if getattr(args, option) <= 0:
            raise UsageError(f"--{option.replace('_', '-')}: must be above 0")
    args.case = args.case or [Case("sklearn_fp32", 1), Case("onnx_int8", 64)]
    run_overload(args)
    return 0

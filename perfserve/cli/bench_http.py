"""`perfserve bench-http`: requests/s and latency over HTTP against the bare-ASGI floor (needs
wrk)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtests.argtypes import cpu_list
from perfserve.benchmarks.http.competitor_servers import NAMES
from perfserve.benchmarks.http.http_overhead import add_pinned_bench_options, run_benchmark
from perfserve.benchmarks.http.scrape_cost import run_scrape_cost
from perfserve.benchmarks.http.workers import run_workers_benchmark
from perfserve.benchmarks.offline.options import int_list, name_list
from perfserve_common.protocols import ProtocolName, parse_protocol
from perfserve_common.usage import RawDescriptionHelpFormatter, UsageError, add_option

WORKERS_VARIANT = "onnx_int8"


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = __doc__
    bench.formatter_class = RawDescriptionHelpFormatter
    add_pinned_bench_options(bench, Path("reports/bench-http"), "wrk")
    add_option(
        bench,
        "--concurrency",
        type=int_list,
        default="1,16,64",
        help="Open connections wrk keeps, comma-separated: one cell each.",
    )
    add_option(bench, "--seconds", type=float, default=5.0, help="Length of each cell, in seconds.")
    add_option(
        bench, "--rounds", type=int, default=3, help="Interleaved rounds; medians are reported."
    )
    add_option(
        bench,
        "--variants",
        type=name_list,
        help="Variants to measure, comma-separated (default: all).",
    )
    add_option(
        bench,
        "--baseline",
        type=Path,
        help="Also serve the same variants from another checkout of perfserve (an earlier "
        "commit) and compare this one against it, target by target.",
    )
    add_option(
        bench,
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Run the baseline's servers with this environment variable (repeatable); "
        "without --baseline, the baseline is this checkout, e.g. --baseline-env "
        "PERFSERVE_DRIFT=0 measures what watching drift costs.",
    )
    add_option(
        bench,
        "--protocols",
        type=_protocol_list,
        default="",
        help="Also measure each variant through these protocols' routes (v1, v2), on the "
        "same servers as /predict, comma-separated.",
    )
    add_option(
        bench,
        "--competitor",
        action="append",
        default=[],
        metavar="NAME[=PYTHON]",
        help=f"Also measure another server ({', '.join(NAMES)}) serving the onnx_int8 "
        "artifact, run by PYTHON (a virtualenv with that framework; default: this one).",
    )
    add_option(
        bench,
        "--workers",
        type=int_list,
        help="Instead: serve one variant (--variants, default onnx_int8) with each of these "
        "worker counts, comma-separated, on --server-cpus, and say what N workers should "
        "hold on paper from the CPU per request (see docs/http-benchmarks.md).",
    )
    add_option(
        bench,
        "--scrape-cost",
        action="store_true",
        help="Instead of requests/s, measure the server CPU (event-loop time) one full "
        "/metrics scrape costs, against --baseline too if given (no wrk needed).",
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.workers:
        return _run_workers(args)
    if args.baseline is not None and not (args.baseline / "service").is_dir():
        raise UsageError(f"--baseline: {args.baseline} is not a checkout of perfserve")
    if args.scrape_cost:
        run_scrape_cost(
            args.store, args.out, args.rounds, args.server_cpus, args.generator_cpus, args.baseline
        )
        return 0
    run_benchmark(
        args.store,
        args.out,
        args.concurrency,
        args.seconds,
        args.rounds,
        args.server_cpus,
        args.generator_cpus,
        args.variants or None,
        dict(_competitor(spec) for spec in args.competitor),
        args.baseline,
        args.protocols,
        dict(_variable(spec) for spec in args.baseline_env),
    )
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    if any(n < 1 for n in args.workers):
        raise UsageError(f"--workers {args.workers}: worker counts must be 1 or more")
    variants = args.variants or [WORKERS_VARIANT]
    if len(variants) > 1:
        raise UsageError(f"--variants {','.join(variants)}: --workers measures one variant")
    pinned = {"--server-cpus": args.server_cpus, "--generator-cpus": args.generator_cpus}
    for option, cpus in pinned.items():
        try:
            cpu_list(cpus)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{option}: {error}") from None
    run_workers_benchmark(
        args.store,
        args.out,
        args.workers,
        args.concurrency,
        args.seconds,
        args.rounds,
        args.server_cpus,
        args.generator_cpus,
        variants[0],
    )
    return 0


def _variable(spec: str) -> tuple[str, str]:
    name, equals, value = spec.partition("=")
    if not equals or not name.strip():
        raise UsageError(f"--baseline-env {spec!r}: give NAME=VALUE, e.g. PERFSERVE_DRIFT=0")
    return name.strip(), value


def _protocol_list(text: str) -> tuple[ProtocolName, ...]:
    """Protocols other than perfserve's own, which is always measured."""
    try:
        chosen = tuple(parse_protocol(name) for name in name_list(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if "perfserve" in chosen:
        raise argparse.ArgumentTypeError("/predict is always measured; name v1 or v2")
    return chosen


def _competitor(spec: str) -> tuple[str, str]:
    name, _, python = spec.partition("=")
    if name not in NAMES:
        raise UsageError(f"unknown competitor {name!r}; known: {', '.join(NAMES)}")
    return name, python or sys.executable

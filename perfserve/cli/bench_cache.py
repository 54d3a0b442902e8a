"""`perfserve bench-cache`: requests/s, p50 and CPU per request with the row cache and
without it, at the hit ratios of `--bodies zipf:H` mixes (needs wrk)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtests.argtypes import body_mix
from loadtests.bodies import BodyMix
from perfserve.benchmarks.http.cache_gain import run_cache_benchmark
from perfserve.benchmarks.http.http_overhead import add_pinned_bench_options
from perfserve.benchmarks.offline.options import int_list
from perfserve_common.usage import RawDescriptionHelpFormatter, UsageError, add_option


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = __doc__
    bench.formatter_class = RawDescriptionHelpFormatter
    add_pinned_bench_options(bench, Path("reports/bench-cache"), "wrk")
    add_option(bench, "--variant", default="onnx_int8", help="The variant both servers serve.")
    add_option(
        bench,
        "--bodies",
        type=_zipf_mixes,
        default="zipf:0.5,zipf:0.9",
        help="Body mixes, comma-separated, each zipf:H with H the share of requests "
        "repeating a popular row (loadtests/bodies.py): one cell each.",
    )
    add_option(
        bench,
        "--cache-rows",
        type=int,
        default=512,
        help="The cached server's --cache-rows (256 to 1,000 give the mixes their hit ratio).",
    )
    add_option(
        bench,
        "--concurrency",
        type=int_list,
        default="64",
        help="Open connections wrk keeps, comma-separated: one cell each.",
    )
    add_option(
        bench, "--seconds", type=float, default=10.0, help="Length of each cell, in seconds."
    )
    add_option(
        bench, "--rounds", type=int, default=3, help="Interleaved rounds; medians are reported."
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.cache_rows < 1 or args.rounds < 1 or args.seconds <= 0:
        raise UsageError("--cache-rows and --rounds must be 1 or more, --seconds positive")
    run_cache_benchmark(
        args.store,
        args.out,
        args.variant,
        args.bodies,
        args.cache_rows,
        args.concurrency,
        args.seconds,
        args.rounds,
        (args.server_cpus, args.generator_cpus),
    )
    return 0


def _zipf_mixes(text: str) -> list[BodyMix]:
    mixes = [body_mix(part.strip()) for part in text.split(",") if part.strip()]
    if not mixes or any(mix.kind != "zipf" for mix in mixes):
        raise argparse.ArgumentTypeError(f"{text!r}: give zipf:H mixes, e.g. zipf:0.5,zipf:0.9")
    return mixes

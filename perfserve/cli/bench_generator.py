"""`perfserve bench-generator`: each sweep engine's ceiling against the bare-ASGI floor, and what
it adds at 1,000/s."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from loadtests.argtypes import cpu_list, positive_float, rate_list
from loadtests.engines.base import ENGINES
from perfserve.benchmarks.generator.generator_bench import (
    reference_steps,
    render,
    run_benchmark,
    scrape_cost_ms,
)
from perfserve.benchmarks.generator.host_stalls import measure as measure_stalls
from perfserve.benchmarks.generator.host_stalls import render as render_stalls
from perfserve.benchmarks.generator.knee_check import compare_knees
from perfserve.benchmarks.generator.references import (
    build_instant,
    build_openloop,
)
from perfserve.benchmarks.generator.same_rate import render as render_same_rates
from perfserve.benchmarks.generator.same_rate import same_rates
from perfserve.benchmarks.http.http_overhead import add_cpu_options
from perfserve_common.usage import UsageError, add_option
from service.store import StoreError, load_manifest


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = (
        "Each sweep engine's ceiling against the bare ASGI floor and, at --rate against "
        "--variant, the latency it reports and how much of it is outside the server; k6 "
        "and openloop beside them with --k6 and --openloop, and a knee cross-check against "
        "them with --knee-slo-ms."
    )
    add_option(
        bench, "--store", type=Path, default=Path("model_store"), help="Model store to serve."
    )
    add_option(
        bench, "--variant", default="onnx_int8", help="Variant of the latency step and the knee."
    )
    add_option(
        bench, "--rate", type=positive_float, default=1000.0, help="Latency step rate, req/s."
    )
    add_option(bench, "--seconds", type=positive_float, default=6.0, help="Latency step length, s.")
    add_option(
        bench, "--rounds", type=int, default=1, help="Interleaved rounds (0: only the knees)."
    )
    add_option(
        bench, "--engines", nargs="+", choices=ENGINES, default=list(ENGINES), help="Engines."
    )
    add_cpu_options(bench, "the generators", old_generator_flag="--generator-cpu")
    add_option(bench, "--k6", help="Path of a k6 binary, to run k6 beside the engines.")
    add_option(
        bench,
        "--openloop",
        action="store_true",
        help="Build perfserve/benchmarks/generator/openloop.c and instant.c (needs cc); run "
        "openloop beside the engines, and against instant for the wire's own latency.",
    )
    add_option(
        bench,
        "--knee-slo-ms",
        type=positive_float,
        help="With --k6 or --openloop: compare knees against theirs at this SLO.",
    )
    add_option(
        bench, "--knee-seconds", type=positive_float, default=8.0, help="Knee step length, s."
    )
    add_option(
        bench,
        "--knee-rounds",
        type=int,
        default=1,
        help="Knee comparisons, each on a fresh server.",
    )
    add_option(
        bench, "--knee-start-rate", type=positive_float, default=1000.0, help="First knee rate."
    )
    add_option(
        bench, "--knee-max-rate", type=positive_float, default=64_000.0, help="Top knee rate."
    )
    add_option(
        bench,
        "--knee-max-batch-size",
        type=int,
        help="The knee server's --max-batch-size (1: unbatched, a knee within k6's reach).",
    )
    add_option(
        bench,
        "--same-rates",
        type=rate_list,
        help="With --openloop: a sweep step and an openloop run at each of these rates, on "
        "one server, their p99s side by side (perfserve/benchmarks/generator/same_rate.py).",
    )
    add_option(
        bench,
        "--same-rate-seconds",
        type=positive_float,
        default=16.0,
        help="Each side's length at each rate, s (a quarter of it warm-up).",
    )
    add_option(
        bench, "--same-rate-rounds", type=int, default=3, help="Rounds of the same-rate check."
    )
    add_option(
        bench,
        "--host-stalls",
        type=positive_float,
        metavar="SECONDS",
        help="How often the generator's CPU is taken from it: a spinning probe on it for "
        "this long per side, the server's CPU idle and busy, in --same-rate-rounds rounds "
        "(perfserve/benchmarks/generator/host_stalls.py).",
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.store)
    except StoreError as error:
        raise UsageError(f"--store: {error} (run `perfserve build` first)") from None
    if args.variant not in manifest.variants:
        raise UsageError(
            f"--variant {args.variant!r}: not in the store; one of {list(manifest.variants)}"
        )
    if args.rounds < 0:
        raise UsageError("--rounds must be >= 0 (0: only the knee comparison)")
    if args.knee_rounds < 1:
        raise UsageError("--knee-rounds must be >= 1")
    if args.knee_slo_ms and not (args.k6 or args.openloop):
        raise UsageError("--knee-slo-ms needs --k6 or --openloop (an independent generator)")
    if args.same_rates and not args.openloop:
        raise UsageError("--same-rates needs --openloop (the independent client)")
    if args.same_rate_rounds < 1:
        raise UsageError(f"--same-rate-rounds {args.same_rate_rounds}: must be at least 1")
    if args.host_stalls:
        probe_cpu = _first_cpu(args.generator_cpus, "--generator-cpus")
        other_cpu = _first_cpu(args.server_cpus, "--server-cpus")
    with tempfile.TemporaryDirectory() as folder:
        openloop = build_openloop(Path(folder)) if args.openloop else None
        references = reference_steps(args, openloop)
        wire = (openloop, build_instant(Path(folder))) if openloop else None
        print(f"load average before: {os.getloadavg()}", file=sys.stderr)
        if args.rounds:
            print(render(run_benchmark(args, references, wire), args.rate))
            cost = scrape_cost_ms(args.store, args.server_cpus)
            print(f"server CPU per /metrics scrape: {cost:.1f} ms")
        if args.knee_slo_ms:
            print(compare_knees(references, args))
        if args.same_rates:
            results = same_rates(
                references["openloop"], args.store, args.variant, args.same_rates,
                seconds=args.same_rate_seconds, rounds=args.same_rate_rounds,
                server_cpu=args.server_cpus, generator_cpu=args.generator_cpus,
            )  # fmt: skip
            print(render_same_rates(results, args.variant, args.same_rate_seconds))
        if args.host_stalls:
            stalls = measure_stalls(probe_cpu, other_cpu, args.host_stalls, args.same_rate_rounds)
            print(render_stalls(stalls))
    print(f"load average after: {os.getloadavg()}")
    return 0


def _first_cpu(cpus: str, option: str) -> int:
    """The first CPU of a CPU list such as 1 or 2,3."""
    try:
        return cpu_list(cpus)[0]
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{option}: {error}") from None

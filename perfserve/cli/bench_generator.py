"""`perfserve bench-generator`: each sweep engine's ceiling against the bare-ASGI floor, and what
it adds at 1,000/s."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.argtypes import positive_float
from loadtests.engines.base import ENGINES
from perfserve.benchmarks.generator.generator_bench import (
    reference_steps,
    render,
    run_benchmark,
    scrape_cost_ms,
)
from perfserve.benchmarks.generator.knee_check import compare_knees
from perfserve.benchmarks.generator.references import (
    build_instant,
    build_openloop,
)
from perfserve.common.usage import UsageError, add_option
from service.store import StoreError, load_manifest


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = (
        "Each sweep engine's ceiling against the bare ASGI floor and, at --rate against "
        "--variant, the latency it reports and how much of it is outside the server; k6 "
        "and openloop beside them with --k6 and --openloop, and a knee cross-check against "
        "them with --knee-slo-ms."
    )
    options: list[tuple[str, dict[str, Any], str]] = [
        ("--store", {"type": Path, "default": Path("model_store")}, "Model store to serve."),
        ("--variant", {"default": "onnx_int8"}, "Variant of the latency step and the knee."),
        ("--rate", {"type": positive_float, "default": 1000.0}, "Latency step rate, req/s."),
        ("--seconds", {"type": positive_float, "default": 6.0}, "Latency step length, s."),
        ("--rounds", {"type": int, "default": 1}, "Interleaved rounds (0: only the knees)."),
        ("--engines", {"nargs": "+", "choices": ENGINES, "default": list(ENGINES)}, "Engines."),
        ("--server-cpu", {"default": "0"}, "CPU list the servers are pinned to."),
        ("--generator-cpu", {"default": "1"}, "CPU list the generators are pinned to."),
        ("--k6", {}, "Path of a k6 binary, to run k6 beside the engines."),
        (
            "--openloop",
            {"action": "store_true"},
            "Build perfserve/benchmarks/generator/openloop.c and instant.c (needs cc); run "
            "openloop beside the "
            "engines, and against instant for the wire's own latency.",
        ),
        (
            "--knee-slo-ms",
            {"type": positive_float},
            "With --k6 or --openloop: compare knees against theirs at this SLO.",
        ),
        ("--knee-seconds", {"type": positive_float, "default": 8.0}, "Knee step length, s."),
        ("--knee-rounds", {"type": int, "default": 1}, "Knee comparisons, each on a fresh server."),
        ("--knee-start-rate", {"type": positive_float, "default": 1000.0}, "First knee rate."),
        ("--knee-max-rate", {"type": positive_float, "default": 64_000.0}, "Top knee rate."),
        (
            "--knee-max-batch-size",
            {"type": int},
            "The knee server's --max-batch-size (1: unbatched, a knee within k6's reach).",
        ),
    ]
    for name, settings, text in options:
        add_option(bench, name, help=text, **settings)
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
    with tempfile.TemporaryDirectory() as folder:
        openloop = build_openloop(Path(folder)) if args.openloop else None
        references = reference_steps(args, openloop)
        wire = (openloop, build_instant(Path(folder))) if openloop else None
        print(f"load average before: {os.getloadavg()}", file=sys.stderr)
        if args.rounds:
            print(render(run_benchmark(args, references, wire), args.rate))
            cost = scrape_cost_ms(args.store, args.server_cpu)
            print(f"server CPU per /metrics scrape: {cost:.1f} ms")
        if args.knee_slo_ms:
            print(compare_knees(references, args))
    print(f"load average after: {os.getloadavg()}")
    return 0

"""`perfserve bench-stall`: after the server is frozen (SIGSTOP/SIGCONT) under open-loop load
near its knee, how long p99 takes to come back under the SLO, with and without the queue
deadline."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from loadtests.argtypes import cpu_list, positive_float, positive_int
from perfserve.benchmarks.http.http_overhead import add_pinned_bench_options
from perfserve.benchmarks.overload.stall import StallSettings, run_stall
from perfserve_common.slo import SLO_P99_MS
from perfserve_common.usage import RawDescriptionHelpFormatter, UsageError, add_option
from service.store import StoreError, load_manifest


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = __doc__
    bench.formatter_class = RawDescriptionHelpFormatter
    add_pinned_bench_options(bench, Path("reports/bench-stall"), "the native generator")
    add_option(bench, "--variant", default="onnx_int8", help="The variant loaded.")
    add_option(
        bench,
        "--knee-qps",
        type=positive_float,
        help="The knee the loads are shares of (default: measured by the sweep first).",
    )
    add_option(
        bench, "--slo-p99-ms", type=positive_float, default=SLO_P99_MS, help="The p99 objective."
    )
    add_option(
        bench,
        "--loads",
        type=_numbers("shares of the knee", 0.0, 1.5),
        default="0.5,0.7,0.85",
        help="Offered load as shares of the knee, comma-separated.",
    )
    add_option(
        bench,
        "--freezes-ms",
        type=_numbers("freeze lengths in ms", 0.0, 10_000.0),
        default="100,300,1000",
        help="How long the server is frozen each time, comma-separated.",
    )
    add_option(
        bench,
        "--queue-deadline-ms",
        type=_numbers("queue deadlines in ms (0: none)", 0.0, 60_000.0, zero=True),
        help="Server configurations compared, interleaved: each a --queue-deadline-ms of "
        "`perfserve serve`, 0 for none (default: 0 and half the SLO).",
    )
    add_option(bench, "--periods", type=positive_int, default=2, help="Freezes per cell.")
    add_option(
        bench, "--period-s", type=positive_float, default=10.0, help="One freeze per period."
    )
    add_option(
        bench, "--window-ms", type=positive_float, default=100.0, help="p99 is read per window."
    )
    add_option(
        bench,
        "--max-in-flight",
        type=positive_int,
        default=1024,
        help="Connections the generator may open: past them arrivals wait in the generator.",
    )
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        variants = load_manifest(args.store).variants
    except StoreError:
        variants = None  # built on the way
    if variants is not None and args.variant not in variants:
        raise UsageError(f"--variant {args.variant}: not in {args.store} ({', '.join(variants)})")
    if args.window_ms / 1000 * 10 > args.period_s:
        raise UsageError("--window-ms: at most a tenth of --period-s")
    try:
        generator = cpu_list(args.generator_cpus)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"--generator-cpus: {error}") from None
    settings = StallSettings(
        store=args.store,
        out=args.out,
        variant=args.variant,
        knee_qps=args.knee_qps,
        slo_p99_ms=args.slo_p99_ms,
        loads=args.loads,
        freezes_ms=args.freezes_ms,
        queue_deadlines_ms=args.queue_deadline_ms or [0.0, args.slo_p99_ms / 2],
        periods=args.periods,
        period_s=args.period_s,
        window_s=args.window_ms / 1000,
        max_in_flight=args.max_in_flight,
        server_cpus=args.server_cpus,
        generator_cpu=generator[0],
    )
    run_stall(settings)
    return 0


def _numbers(
    what: str, low: float, high: float, zero: bool = False
) -> Callable[[str], list[float]]:
    """A comma-separated list of numbers above `low` (or equal, with `zero`), up to `high`."""

    def parse(text: str) -> list[float]:
        try:
            values = [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, comma-separated, not {text!r}") from None
        inside = [low <= v <= high if zero else low < v <= high for v in values]
        if not values or not all(inside):
            bound = "at least" if zero else "above"
            raise argparse.ArgumentTypeError(f"{what}: {bound} {low:g} and at most {high:g}")
        return values

    return parse

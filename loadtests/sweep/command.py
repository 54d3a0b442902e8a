"""The `perfserve sweep` command line. Every option also reads `PERFSERVE_<OPTION>`.

Locust is imported only when the command runs: it monkey-patches the process with
gevent, which nothing else in `perfserve` should be subjected to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from common.slo import SLO_P99_MS
from common.usage import UsageError, add_option
from loadtests import SPLIT
from loadtests.argtypes import positive_float, rate_list
from loadtests.arrivals import ARRIVAL_PROCESSES
from loadtests.loadgen_metrics import DEFAULT_PORT

if TYPE_CHECKING:
    from loadtests.sweep.runner import SweepPlan


def add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.description = (
        "Steps of rising target QPS against one variant, several in turn, or the "
        "live split; reports the highest QPS that holds the p99 SLO, with the server's side "
        "of every step, and writes steps.csv, summary.json, plots and report.html."
    )
    add_option(sweep, "--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    add_option(
        sweep, "--variant", nargs="+", default=None,
        help=f"variants to sweep in turn ('{SPLIT}' = the live split; default: every variant)",
    )  # fmt: skip
    add_option(sweep, "--rates", type=rate_list, help="fixed target rates, e.g. 100,200,400")
    add_option(sweep, "--auto", action="store_true", help="find the knee (the default)")
    add_option(sweep, "--slo-p99-ms", type=positive_float, default=SLO_P99_MS, help="the p99 SLO")
    add_option(sweep, "--step-seconds", type=positive_float, default=20.0, help="least per step")
    add_option(sweep, "--max-step-seconds", type=positive_float, help="most per step (3x step)")
    add_option(sweep, "--window-seconds", type=positive_float, help="window (step / 4)")
    add_option(sweep, "--arrivals", choices=ARRIVAL_PROCESSES, default="poisson", help="gaps")
    add_option(sweep, "--start-rate", type=positive_float, default=100.0, help="--auto: first")
    add_option(sweep, "--max-rate", type=positive_float, default=50_000.0, help="highest rate")
    add_option(sweep, "--precision", type=positive_float, default=0.1, help="--auto: bisect to")
    add_option(sweep, "--rows-per-request", type=int, default=1, help="rows in each request")
    add_option(sweep, "--store", type=Path, default=Path("model_store"), help="rows to send")
    add_option(sweep, "--workers", type=int, default=0, help="Locust worker processes (0: here)")
    add_option(sweep, "--max-in-flight", type=int, default=256, help="connections per generator")
    add_option(sweep, "--stress", action="store_true", help="push past the knee, time recovery")
    add_option(sweep, "--soak-rate", type=positive_float, help="hold this rate (soak)")
    add_option(sweep, "--soak-seconds", type=positive_float, default=600.0, help="soak length")
    add_option(sweep, "--metrics-port", type=int, default=DEFAULT_PORT, help="0: no metrics")
    add_option(sweep, "--metrics-host", default="127.0.0.1", help="generator metrics interface")
    add_option(sweep, "--out", type=Path, default=Path("reports/sweep"), help="report folder")
    sweep.set_defaults(run=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    import locust  # noqa: F401  (gevent's monkey-patching, before the sweep's imports)

    from loadtests.report.outputs import write_outputs
    from loadtests.report.text import knee_table
    from loadtests.sweep.runner import run_sweep

    report = run_sweep(plan, lambda line: print(line, file=sys.stderr, flush=True))
    write_outputs(report, args.out)
    print(knee_table(report))
    print(f"report: {args.out / 'report.html'}")
    return 0


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    from loadtests.sweep.runner import SweepPlan
    from loadtests.sweep.steps import StepSettings

    url = args.url.rstrip("/")
    models, weights = _service_description(url)
    targets = _names(args.variant) or models
    unknown = [t for t in targets if t != SPLIT and t not in models]
    if unknown:
        raise UsageError(f"unknown variant(s) {unknown}; the service has {models} (or '{SPLIT}')")
    args.auto, args.stress = _flag(args.auto), _flag(args.stress)
    if args.rates and args.auto:
        raise UsageError("--rates and --auto exclude each other")
    if args.workers < 0 or args.max_in_flight < 1 or args.rows_per_request < 1:
        raise UsageError("--workers must be >= 0, --max-in-flight and --rows-per-request >= 1")
    window = args.window_seconds or max(1.0, args.step_seconds / 4)
    steps = StepSettings(
        slo_p99_ms=args.slo_p99_ms,
        step_seconds=args.step_seconds,
        window_seconds=window,
        max_step_seconds=args.max_step_seconds or 3 * args.step_seconds,
        arrivals=args.arrivals,
    )
    soak_only = args.soak_rate is not None and not (args.rates or args.auto)
    return SweepPlan(
        url=url,
        targets=targets,
        rates=args.rates,
        steps=steps,
        store=args.store,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        precision=args.precision,
        rows_per_request=args.rows_per_request,
        sweep=not soak_only,
        stress=args.stress,
        soak_rate=args.soak_rate,
        soak_seconds=args.soak_seconds,
        workers=args.workers,
        max_in_flight=args.max_in_flight,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        split_weights=weights,
    )


def _names(given: list[str] | str | None) -> list[str]:
    """Variant names from the command line (a list) or PERFSERVE_VARIANT (a,b or a b)."""
    if given is None:
        return []
    parts = given if isinstance(given, list) else [given]
    return [name for part in parts for name in part.replace(",", " ").split()]


def _flag(value: bool | str) -> bool:
    """A switch given on the command line (True) or as PERFSERVE_<FLAG>=1/true/yes."""
    return value is True or str(value).lower() in ("1", "true", "yes")


def _service_description(url: str) -> tuple[list[str], dict[str, float]]:
    """The variants the service serves and its current split; a clear error if it is
    not there."""
    try:
        models = httpx.get(f"{url}/models", timeout=10).raise_for_status().json()
        traffic = httpx.get(f"{url}/traffic", timeout=10).raise_for_status().json()
    except httpx.HTTPError as error:
        raise UsageError(f"cannot read {url}/models: {error}") from None
    return [v["name"] for v in models["variants"]], dict(traffic["weights"])

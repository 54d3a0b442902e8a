"""The `perfserve sweep` command line. Every option also reads `PERFSERVE_<OPTION>`.

Locust is imported only when the command runs with `--engine locust`: it monkey-patches
the process with gevent, which nothing else in `perfserve` should be subjected to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests import SPLIT
from loadtests.argtypes import (
    body_mix,
    cpu_list,
    positive_float,
    positive_int,
    protocol,
    rate_list,
)
from loadtests.arrivals import ARRIVAL_PROCESSES
from loadtests.bodies import BODIES_HELP, DISTINCT
from loadtests.engines.base import ENGINES
from loadtests.loadgen_metrics import DEFAULT_PORT
from loadtests.shift import check_features, shift_specs
from loadtests.sweep.acceptance import StepVerdict
from loadtests.targets import TargetFacts, describe_target
from perfserve.cli.exit_codes import ExitCode
from perfserve_common.slo import SLO_P99_MS
from perfserve_common.usage import UsageError, add_option
from service.store import load_manifest

if TYPE_CHECKING:
    from loadtests.sweep.runner import SweepPlan


def add_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.description = (
        "Steps of rising target QPS against one variant, several in turn, or the "
        "live split; reports the highest QPS that holds the p99 SLO, with the server's side "
        "of every step, and writes steps.csv, summary.json, plots and report.html."
    )
    add_option(
        sweep,
        "--url",
        required=True,
        help="Base URL of the running service, e.g. http://127.0.0.1:8000.",
    )
    add_option(
        sweep,
        "--protocol",
        type=protocol,
        default="perfserve",
        help="How to ask for predictions: perfserve's /predict, KServe v1 or the Open "
        "Inference Protocol v2 (for another server, name its models with --variants).",
    )
    add_option(
        sweep, "--variants", renamed_from="--variant", nargs="+", default=None,
        help=f"Variants to sweep in turn; '{SPLIT}' sends through the live traffic split "
        "(default: every variant the service serves).",
    )  # fmt: skip
    add_option(
        sweep,
        "--rates",
        type=rate_list,
        help="Fixed target rates in requests/s, e.g. 100,200,400 (default: search for the knee).",
    )
    add_option(
        sweep,
        "--auto",
        action="store_true",
        help="Search for the knee: the default when --rates is not given.",
    )
    add_option(
        sweep,
        "--slo-p99-ms",
        type=positive_float,
        default=SLO_P99_MS,
        help="p99 latency SLO in ms that a step must hold.",
    )
    add_option(
        sweep,
        "--step-seconds",
        type=positive_float,
        default=20.0,
        help="Shortest time a step runs, in seconds; it is extended while results settle.",
    )
    add_option(
        sweep,
        "--max-step-seconds",
        type=positive_float,
        help="Longest time a step may run, in seconds (default: 3 x --step-seconds).",
    )
    add_option(
        sweep,
        "--window-seconds",
        type=positive_float,
        help="Length of the windows a step is judged in, in seconds (default: step / 4).",
    )
    add_option(
        sweep,
        "--arrivals",
        choices=ARRIVAL_PROCESSES,
        default="poisson",
        help="How gaps between arrivals are drawn: poisson (random) or constant.",
    )
    add_option(
        sweep,
        "--start-rate",
        type=positive_float,
        default=100.0,
        help="With --auto: the first rate tried, in requests/s; it doubles until a step fails.",
    )
    add_option(
        sweep,
        "--max-rate",
        type=positive_float,
        default=50_000.0,
        help="Highest rate tried, in requests/s.",
    )
    add_option(
        sweep,
        "--precision",
        type=positive_float,
        default=0.1,
        help="With --auto: bisect until the last good and first failing rates are this close "
        "(relative).",
    )
    add_option(
        sweep,
        "--rounds",
        type=positive_int,
        help="Rounds of the knee search on fresh steps, the variants taking turns step by "
        "step; each knee's interval and each comparison come from them (default: 5; 1 with "
        "--rates for a single variant).",
    )
    add_option(
        sweep,
        "--warmup-seconds",
        type=float,
        help="Time at each step's rate before its measured windows, reported apart "
        "(default: one window).",
    )
    add_option(
        sweep,
        "--fail-on-miss",
        action="store_true",
        help="Exit 1 when the SLO is missed at a rate given with --rates or no rate held, "
        "3 when the run is not conclusive (see docs/KNEES.md).",
    )
    add_option(sweep, "--rows-per-request", type=int, default=1, help="Rows in each request.")
    add_option(sweep, "--bodies", type=body_mix, default=DISTINCT, help=BODIES_HELP)
    add_option(
        sweep,
        "--store",
        type=Path,
        default=Path("model_store"),
        help="Model store whose hold-out rows are sent.",
    )
    add_option(
        sweep,
        "--shift",
        type=shift_specs,
        action="extend",
        metavar="FEATURE=SCALE",
        help="Send hold-out rows with this feature multiplied by SCALE (repeatable, or "
        "comma-joined): shifted traffic, for the service's drift metrics and alert.",
    )
    add_option(
        sweep,
        "--engine",
        choices=ENGINES,
        default="native",
        help="Load generator: native (uvloop + httptools processes) or locust.",
    )
    add_option(
        sweep,
        "--generators",
        type=int,
        default=1,
        help="Native generator processes, one per core; their histograms are merged exactly.",
    )
    add_option(
        sweep,
        "--generator-cpus",
        type=cpu_list,
        help="CPUs to pin the native generators to, in turn, e.g. 1 or 2,3.",
    )
    add_option(
        sweep,
        "--calibrate",
        action="store_true",
        help="First measure the generator's own ceiling against a bare ASGI server.",
    )
    add_option(
        sweep,
        "--workers",
        type=int,
        default=0,
        help="With --engine locust: worker processes to start (0: generate in this process).",
    )
    add_option(
        sweep,
        "--max-in-flight",
        type=int,
        default=256,
        help="Most requests in flight (connections) per generator process.",
    )
    add_option(
        sweep,
        "--stress",
        action="store_true",
        help="After the knee, push on to the breaking point and time the recovery.",
    )
    add_option(
        sweep,
        "--soak-rate",
        type=positive_float,
        help="Hold this rate in requests/s for --soak-seconds and watch the server's memory.",
    )
    add_option(
        sweep,
        "--soak-seconds",
        type=positive_float,
        default=600.0,
        help="How long the soak at --soak-rate lasts, in seconds.",
    )
    add_option(
        sweep,
        "--metrics-port",
        type=int,
        default=DEFAULT_PORT,
        help="Port for the generator's Prometheus metrics (0: none).",
    )
    add_option(
        sweep,
        "--metrics-host",
        default="127.0.0.1",
        help="Interface the generator's metrics listen on.",
    )
    add_option(
        sweep,
        "--out",
        type=Path,
        default=Path("reports/sweep"),
        help="Folder for report.html, summary.json, steps.csv and plots.",
    )
    sweep.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args, read_target(args))
    if plan.engine == "locust":
        import locust  # noqa: F401  (gevent's monkey-patching, before the sweep's imports)

    from loadtests.report.outputs import write_outputs
    from loadtests.report.text import answers, knee_table
    from loadtests.sweep.runner import run_sweep

    report = run_sweep(plan, lambda line: print(line, file=sys.stderr, flush=True))
    document = write_outputs(report, args.out)
    print(knee_table(report))
    print(answers(document))
    print(f"report: {args.out / 'report.html'}")
    return sweep_exit(document, _flag(args.fail_on_miss))


SERVERS_MISS = (StepVerdict.MISSES_SLO, StepVerdict.SERVER_SATURATED)
DEFAULT_ROUNDS = 5
"""Enough for a 94% interval of the median knee, and to tell a variant 20% slower from
its baseline in every sweep of the stand-in test (three rounds: in 89 of 100)."""


def sweep_exit(document: dict[str, Any], fail_on_miss: bool) -> ExitCode:
    """The exit code for a sweep's summary.json (docs/KNEES.md): always ANSWERED without
    `--fail-on-miss`. With it: INCONCLUSIVE when the run was not conclusive; NO when the
    server missed the SLO (or fell short, saturated) at a rate asked with `--rates`, or a
    variant held none of the rates its search tried; INCONCLUSIVE when a rate it needed
    gave no answer of the server's (the generator fell behind, the step never settled)."""
    if not fail_on_miss:
        return ExitCode.ANSWERED
    if not document.get("conclusive", True):
        return ExitCode.INCONCLUSIVE
    fixed = document["settings"]["rates"] != "auto"
    untold = False
    for target in document["variants"].values():
        steps = [s for s in target["steps"] if s["phase"] == "sweep"]
        if not steps or not (fixed or target["knee_qps"] is None):
            continue
        if any(s["verdict"] in SERVERS_MISS for s in steps):
            return ExitCode.NO
        held_every_step = all(s["verdict"] == StepVerdict.HOLDS for s in steps)
        untold |= not held_every_step or target["knee_qps"] is None
    return ExitCode.INCONCLUSIVE if untold else ExitCode.ANSWERED


def read_target(args: argparse.Namespace) -> TargetFacts:
    """The one stage of the sweep that reads before it measures: the store's features
    when `--shift` names some, and what the target serves, asked once. The options these
    reads depend on are checked first, so a bad `--url` is said without a request."""
    shift = tuple(args.shift or ())
    if shift:
        check_features(shift, load_manifest(args.store).feature_names)
    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url}: must start with http:// or https://, e.g. http://{url}")
    return describe_target(url, args.protocol, _names(args.variants))


def plan_from_args(args: argparse.Namespace, target: TargetFacts) -> SweepPlan:
    """The sweep's plan from the command line and what the target serves. Pure: it
    neither asks the target nor changes `args`, so every usage error here is found the
    same way with or without a server."""
    from loadtests.sweep.runner import SweepPlan
    from loadtests.sweep.steps import StepSettings

    targets = _names(args.variants) or list(target.models)
    unknown = [t for t in targets if t != SPLIT and t not in target.models]
    if unknown:
        raise UsageError(
            f"--variants {','.join(unknown)}: not served by {target.url}; choose among "
            f"{', '.join(target.models)}, or '{SPLIT}' for the live split"
        )
    auto = _flag(args.auto)
    _check_options(args, auto)
    steps = StepSettings(
        slo_p99_ms=args.slo_p99_ms,
        step_seconds=args.step_seconds,
        window_seconds=args.window_seconds or max(1.0, args.step_seconds / 4),
        max_step_seconds=args.max_step_seconds or 3 * args.step_seconds,
        warmup_seconds=args.warmup_seconds,
        arrivals=args.arrivals,
    )
    soak_only = args.soak_rate is not None and not (args.rates or auto)
    return SweepPlan(
        url=target.url,
        targets=targets,
        rates=args.rates,
        steps=steps,
        store=args.store,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        precision=args.precision,
        rounds=args.rounds or (1 if args.rates and len(targets) == 1 else DEFAULT_ROUNDS),
        rows_per_request=args.rows_per_request,
        bodies=args.bodies,
        sweep=not soak_only,
        stress=_flag(args.stress),
        soak_rate=args.soak_rate,
        soak_seconds=args.soak_seconds,
        engine=args.engine,
        generators=args.generators,
        generator_cpus=args.generator_cpus,
        calibrate=_flag(args.calibrate),
        workers=args.workers,
        max_in_flight=args.max_in_flight,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        split_weights=target.split_weights,
        model_versions=target.model_versions,
        protocol=args.protocol,
        shift=tuple(args.shift or ()),
    )


def _check_options(args: argparse.Namespace, auto: bool) -> None:
    """A UsageError for options that contradict each other or are out of range."""
    if args.rates and auto:
        raise UsageError("--rates and --auto exclude each other")
    if args.workers < 0 or args.max_in_flight < 1 or args.rows_per_request < 1:
        raise UsageError("--workers must be >= 0, --max-in-flight and --rows-per-request >= 1")
    if args.generators < 1:
        raise UsageError("--generators must be >= 1")
    if args.warmup_seconds is not None and args.warmup_seconds < 0:
        raise UsageError(f"--warmup-seconds {args.warmup_seconds:g}: must be 0 or more")
    if args.engine == "native" and args.workers:
        raise UsageError("--workers is for --engine locust; the native engine takes --generators")


def _names(given: list[str] | str | None) -> list[str]:
    """Variant names from the command line (a list) or PERFSERVE_VARIANT (a,b or a b)."""
    if given is None:
        return []
    parts = given if isinstance(given, list) else [given]
    return [name for part in parts for name in part.replace(",", " ").split()]


def _flag(value: bool | str) -> bool:
    """A switch given on the command line (True) or as PERFSERVE_<FLAG>=1/true/yes."""
    return value is True or str(value).lower() in ("1", "true", "yes")

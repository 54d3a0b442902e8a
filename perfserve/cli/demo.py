"""`perfserve demo`: build the store, start the service, run a short sweep, report.

The server is pinned to the first CPU and the load generator (the native engine's one
process, and this controller) to the last, so they do not take each other's core. The
variants get five rounds of a short knee search (steps of a few seconds after a second
of warm-up), taking turns step by step, so each knee comes with an interval and each
pair with a comparison measured in the same minutes; then the knee table is printed and
the report written. The rates reach well past what one core of perfserve holds, so every
knee is the server's (limited by the SLO), not the generator's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from loadtests.sweep.steps import StepSettings
from loadtests.targets import describe_target
from perfserve.modelstore.build import build_store
from perfserve_common.processes import running_server
from perfserve_common.slo import SLO_P99_MS
from perfserve_common.usage import add_option
from service.store import StoreError, load_manifest

DEMO_STEPS = StepSettings(
    slo_p99_ms=SLO_P99_MS, step_seconds=3.0, window_seconds=1.0, max_step_seconds=9.0
)
START_RATE, MAX_RATE, PRECISION, ROUNDS = 2000.0, 32_000.0, 0.15, 5


def run_demo(store: Path, out: Path) -> int:
    try:
        load_manifest(store)
    except StoreError:
        print(f"building the model store in {store} ...")
        build_store(store)
    manifest = load_manifest(store)
    server_cpu, generator_cpu = _cores()
    print("starting perfserve serve on a free loopback port ...")
    with running_server(store, cpus=server_cpu) as server:
        if generator_cpu is not None:
            os.sched_setaffinity(0, {generator_cpu})
        from loadtests.report.outputs import write_outputs
        from loadtests.report.text import answers, knee_table
        from loadtests.sweep.runner import SweepPlan, run_sweep

        plan = SweepPlan(
            url=server.url,
            targets=list(manifest.variants),
            rates=None,
            steps=DEMO_STEPS,
            store=store,
            start_rate=START_RATE,
            max_rate=MAX_RATE,
            precision=PRECISION,
            rounds=ROUNDS,
            generator_cpus=None if generator_cpu is None else [generator_cpu],
            model_versions=describe_target(server.url, "perfserve", []).model_versions,
        )
        report = run_sweep(plan, lambda line: print(line, file=sys.stderr, flush=True))
    document = write_outputs(report, out)
    print(knee_table(report))
    print(answers(document))
    print(f"report: {out / 'report.html'} (with steps.csv, summary.json and the plots)")
    return 0


def _cores() -> tuple[str | None, int | None]:
    """The server's CPU (for taskset) and the generator's, when there are two to use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), cpus[-1]


def add_arguments(demo: argparse.ArgumentParser) -> None:
    demo.description = (
        "Build the model store if it is missing, start `perfserve serve` on a free loopback "
        "port, run five rounds of a short knee search, the variants taking turns (about five "
        "minutes), print the knee table and the comparisons, write the report, and stop the "
        "service."
    )
    add_option(
        demo,
        "--store",
        type=Path,
        default=Path("model_store"),
        help="Model store to serve; built there first if it is missing.",
    )
    add_option(
        demo,
        "--out",
        type=Path,
        default=Path("reports/demo"),
        help="Folder for report.html, summary.json, steps.csv and the plots.",
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(args.store, args.out)

"""`perfserve decide`: pick a variant from the bench results, hard limits first, then an
objective."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from perfserve.cli.exit_codes import ExitCode
from perfserve_common.usage import add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(decide: argparse.ArgumentParser) -> None:
    decide.description = (
        "Filter the benched variants by hard limits (p95 latency, accuracy, "
        "memory, throughput, energy, and floors under perturbation from `perfserve "
        "robustness`), rank the rest by an objective, and say why each "
        "rejected variant failed. Exit 1 when no variant meets the limits."
    )
    add_option(
        decide,
        "--requirements",
        type=Path,
        required=True,
        help="Requirements YAML: limits and an objective (see examples/requirements.yaml).",
    )
    add_option(
        decide,
        "--bench",
        type=Path,
        default=Path("reports/bench"),
        help="Folder of a `perfserve bench` run.",
    )
    add_option(
        decide,
        "--robustness",
        type=Path,
        default=Path("reports/robustness"),
        help="Folder of a `perfserve robustness` run; read when the requirements set "
        "robustness floors.",
    )
    decide.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.figures import figures_from_summary, load_summary
    from perfserve.benchmarks.gate.decide import decide, load_requirements, render_decision
    from perfserve.benchmarks.robustness.report import load_robustness

    requirements = load_requirements(args.requirements)
    summary = load_summary(args.bench)
    figures = figures_from_summary(summary, requirements.batch_size)
    environment = summary["environment"]
    estimate = None if environment["energy_measured"] else environment["energy_source"]
    robustness = load_robustness(args.robustness) if requirements.robustness else None
    decision = decide(figures, requirements, estimate, robustness)
    print(render_decision(decision, figures[0].batch_size))
    return ExitCode.ANSWERED if decision.choice else ExitCode.NO

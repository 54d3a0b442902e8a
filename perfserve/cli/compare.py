"""`perfserve compare`: the promotion gate, a candidate against a baseline; exit 1 on reject."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from perfserve.benchmarks.offline.options import (
    add_measurement_options,
    measure,
    record,
)
from perfserve.cli.exit_codes import ExitCode
from perfserve_common.usage import UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    from perfserve.benchmarks.offline.bench import VariantSpec
    from perfserve.benchmarks.robustness.run import RobustnessSummary
    from service.store import Manifest

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(compare: argparse.ArgumentParser) -> None:
    compare.description = (
        "Bench a baseline and a candidate side by side on the same hold-out and "
        "apply the promotion rules (defaults, a --rules YAML, then flags). Exit 0 to promote, "
        "1 to reject."
    )
    add_option(compare, "--baseline", required=True, help="The variant in service now.")
    add_option(compare, "--candidate", required=True, help="The variant to promote.")
    add_option(
        compare,
        "--candidate-store",
        type=Path,
        help="The candidate's store, for a new model version (default: --store).",
    )
    add_measurement_options(compare, runs=30, batch_sizes="1")
    add_option(
        compare, "--rules", type=Path, help="Promotion rules YAML (see examples/rules.yaml)."
    )
    for rule in fields(_rules_type()):
        flag = "--" + rule.name.replace("_", "-")
        add_option(
            compare, flag, type=float, help=f"Rule; overrides --rules (default: {rule.default})."
        )
    add_option(
        compare,
        "--out",
        type=Path,
        default=Path("reports/compare"),
        help="Folder for the results.",
    )
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.gate.compare import gate, load_rules, render_gate
    from perfserve.benchmarks.gate.score import DEFAULT_WEIGHTS
    from perfserve.benchmarks.offline.report import write_outputs
    from service.store import load_manifest

    rules = load_rules(
        args.rules, {rule.name: getattr(args, rule.name) for rule in fields(_rules_type())}
    )
    manifest = load_manifest(args.store)
    baseline, candidate = _compare_specs(args, manifest)
    summary = measure(
        args, manifest, [baseline, candidate], baseline.name, dict(DEFAULT_WEIGHTS), None
    )
    robustness = (
        _robustness(args, manifest, [baseline, candidate]) if rules.gates_robustness else None
    )
    result = gate(summary, baseline.name, candidate.name, rules, robustness)
    paths = write_outputs(summary, args.out)
    verdict = {"promote": result.promote, "reasons": result.reasons, "table": result.table}
    (args.out / "compare.json").write_text(json.dumps(verdict, indent=2))
    print(render_gate(result, baseline.name, candidate.name))
    record(
        args,
        "compare",
        summary,
        [*paths.values(), args.out / "compare.json"],
        accepted=result.promote,
        extra={"verdict": "promote" if result.promote else "reject", "reasons": result.reasons},
    )
    return ExitCode.ANSWERED if result.promote else ExitCode.NO


def _robustness(
    args: argparse.Namespace, manifest: Manifest, specs: list[VariantSpec]
) -> RobustnessSummary:
    """Both variants on the noise and shift conditions, written beside the bench's results."""
    from perfserve.benchmarks.robustness.floors import GATED_PERTURBATIONS
    from perfserve.benchmarks.robustness.report import write_robustness
    from perfserve.benchmarks.robustness.run import run_robustness

    summary = run_robustness(
        args.store, manifest, specs, GATED_PERTURBATIONS, 0.0, [1], per_feature=False
    )
    write_robustness(summary, args.out / "robustness")
    return summary


def _rules_type() -> type:
    from perfserve.benchmarks.gate.compare import Rules

    return Rules


def _compare_specs(args: argparse.Namespace, manifest: Manifest) -> tuple[VariantSpec, VariantSpec]:
    """The two variants; the candidate may come from another store with the same hold-out."""
    from perfserve.benchmarks.offline.bench import default_specs
    from service.store import load_manifest

    (baseline,) = default_specs(args.store, manifest, [args.baseline])
    store = args.candidate_store or args.store
    other = manifest if store == args.store else load_manifest(store)
    if other.holdout.sha256 != manifest.holdout.sha256 or other.task != manifest.task:
        raise UsageError(
            f"{store} has another hold-out set or task than {args.store}; a comparison needs "
            "the same rows (build it with --data on the same hold-out CSV)"
        )
    (candidate,) = default_specs(store, other, [args.candidate])
    if candidate.name == baseline.name:
        candidate = replace(candidate, name=f"{candidate.name}@candidate")
    return baseline, candidate

"""The benchmark subcommands of `perfserve`: bench, decide, compare, history.

`perfserve capacity` plans from their results: benchmarks/capacity_command.py."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.options import (
    DEFAULT_HISTORY,
    add_measurement_options,
    delays,
    measure,
    name_list,
    record,
)
from common.usage import UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    from benchmarks.bench import VariantSpec
    from service.store import Manifest

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = (
        "Measure every variant (or --variants) on the store's hold-out: quality, "
        "latency per batch size with 95% CIs, throughput, memory, CPU and energy, operator "
        "breakdown; compare each with a baseline; write CSVs, JSON, a plot and a report."
    )
    add_measurement_options(bench, runs=30, batch_sizes="1,8,64")
    add_option(
        bench,
        "--variants",
        type=name_list,
        help="Variants to measure, comma-separated (default: all).",
    )
    add_option(
        bench,
        "--baseline",
        help="Variant the others are compared with (default: the store's reference).",
    )
    add_option(
        bench,
        "--headline-batch-size",
        type=int,
        help="Batch size the dashboard, plot and decisions use (default: the first benched).",
    )
    add_option(
        bench,
        "--weights",
        default="accuracy=0.4,latency=0.3,memory=0.15,energy=0.15",
        help="Weights of the composite score, per dimension.",
    )
    add_option(
        bench,
        "--inject-latency-ms",
        type=delays,
        default={},
        help="Sensitivity check: add this many ms to each call of a variant, e.g. onnx_int8=2.",
    )
    add_option(
        bench, "--out", type=Path, default=Path("reports/bench"), help="Folder for the results."
    )
    bench.add_argument(
        "--int8-methods",
        action="store_true",
        help="also measure every int8 method the build wrote (dynamic, per row, static), "
        "as int8_<method>",
    )
    bench.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="Exit 1 when the history flags a regression (for CI).",
    )
    bench.set_defaults(run=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from benchmarks.bench import default_specs
    from benchmarks.report import write_outputs
    from benchmarks.score import parse_weights
    from service.store import load_manifest

    manifest = load_manifest(args.store)
    weights = parse_weights(args.weights)
    specs = default_specs(args.store, manifest, args.variants)
    if args.int8_methods:
        from benchmarks.precision import int8_method_specs

        specs += int8_method_specs(specs, manifest)
    unknown = set(args.inject_latency_ms) - {spec.name for spec in specs}
    if unknown:
        raise UsageError(f"--inject-latency-ms names variants not benchmarked: {sorted(unknown)}")
    specs = [replace(spec, delay_s=args.inject_latency_ms.get(spec.name, 0.0)) for spec in specs]
    summary = measure(args, manifest, specs, args.baseline, weights, args.headline_batch_size)
    paths = write_outputs(summary, args.out)
    print(paths["report"].read_text())
    print(f"results in {args.out}/")
    steady = record(args, "bench", summary, list(paths.values()))
    return 1 if args.fail_on_regression and not steady else 0


def add_decide_arguments(decide: argparse.ArgumentParser) -> None:
    decide.description = (
        "Filter the benched variants by hard limits (p95 latency, accuracy, "
        "memory, throughput, energy), rank the rest by an objective, and say why each "
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
    decide.set_defaults(run=run_decide_command)


def run_decide_command(args: argparse.Namespace) -> int:
    from benchmarks.decide import decide, load_requirements, render_decision
    from benchmarks.figures import figures_from_summary, load_summary

    requirements = load_requirements(args.requirements)
    summary = load_summary(args.bench)
    figures = figures_from_summary(summary, requirements.batch_size)
    environment = summary["environment"]
    estimate = None if environment["energy_measured"] else environment["energy_source"]
    decision = decide(figures, requirements, estimate)
    print(render_decision(decision, figures[0].batch_size))
    return 0 if decision.choice else 1


def add_compare_arguments(compare: argparse.ArgumentParser) -> None:
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
    compare.set_defaults(run=run_compare_command)


def _rules_type() -> type:
    from benchmarks.compare import Rules

    return Rules


def run_compare_command(args: argparse.Namespace) -> int:
    from benchmarks.compare import gate, load_rules, render_gate
    from benchmarks.report import write_outputs
    from benchmarks.score import DEFAULT_WEIGHTS
    from service.store import load_manifest

    rules = load_rules(
        args.rules, {rule.name: getattr(args, rule.name) for rule in fields(_rules_type())}
    )
    manifest = load_manifest(args.store)
    baseline, candidate = _compare_specs(args, manifest)
    summary = measure(
        args, manifest, [baseline, candidate], baseline.name, dict(DEFAULT_WEIGHTS), None
    )
    result = gate(summary, baseline.name, candidate.name, rules)
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
    return 0 if result.promote else 1


def _compare_specs(args: argparse.Namespace, manifest: Manifest) -> tuple[VariantSpec, VariantSpec]:
    """The two variants; the candidate may come from another store with the same hold-out."""
    from benchmarks.bench import default_specs
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


def add_history_arguments(history: argparse.ArgumentParser) -> None:
    history.description = (
        "List every recorded bench and compare run of this folder, with why a run is not "
        "accepted (a regression against the last accepted run on the same machine, or a "
        "rejected promotion); `accept ID` makes a run the baseline later runs are held to."
    )
    add_option(
        history,
        "--history",
        type=Path,
        default=DEFAULT_HISTORY,
        help="Folder the bench and compare commands record into.",
    )
    history.add_argument(
        "action",
        nargs="?",
        choices=["list", "accept"],
        default="list",
        help="list the records (the default), or accept one.",
    )
    history.add_argument("record", nargs="?", help="The record id to accept, as listed.")
    history.set_defaults(run=run_history_command)


def run_history_command(args: argparse.Namespace) -> int:
    from benchmarks import history

    if args.action == "accept":
        if not args.record:
            raise UsageError("accept needs a record id (see `perfserve history`)")
        found = history.accept(args.history, args.record)
        print(f"accepted {found.id}: later runs on this machine are checked against it")
        return 0
    recorded = history.records(args.history)
    if not recorded:
        print(f"no records in {args.history}: `perfserve bench` and `compare` record there")
        return 0
    print(history.describe(recorded))
    return 0

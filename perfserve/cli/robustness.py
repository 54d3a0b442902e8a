"""`perfserve robustness`: every variant's quality and agreement with the reference under
noisy, missing, shifted and out-of-range inputs, with bootstrap 95% intervals."""

from __future__ import annotations

import argparse
from pathlib import Path

from perfserve.benchmarks.offline.options import int_list, name_list
from perfserve.cli.exit_codes import ExitCode
from perfserve_common.usage import UsageError, add_option


def add_arguments(robustness: argparse.ArgumentParser) -> None:
    robustness.description = (
        "Score every variant (or --variants) on perturbed copies of the store's hold-out: "
        "Gaussian noise (0.1, 0.5, 1 training std), missing features filled with the training "
        "median (k at random, and each alone), covariate shift (x0.5, x2, +-1 std) and values "
        "near the range guard (inside and just outside: 422). Quality, agreement with the "
        "reference and the gap to it, each with a bootstrap 95% interval; the most sensitive "
        "features; where variants part ways. Writes CSV, JSON, a plot and report.md."
    )
    add_option(robustness, "--store", type=Path, default=Path("model_store"), help="Model store.")
    add_option(
        robustness,
        "--variants",
        type=name_list,
        help="Variants to score, comma-separated (default: all; the reference always runs).",
    )
    add_option(
        robustness,
        "--perturbations",
        type=name_list,
        default="noise,missing,shift,edge",
        help="Which perturbations: noise, missing, shift, edge.",
    )
    add_option(
        robustness,
        "--missing-k",
        type=int_list,
        default="1,3,10",
        help="Features missing at random per row, one condition per value.",
    )
    add_option(
        robustness,
        "--max-feature-range-factor",
        type=float,
        default=_serving_factor(),
        help="The range guard the edge perturbation probes (as `perfserve serve` uses it).",
    )
    add_option(robustness, "--seed", type=int, default=0, help="Seed of every random draw.")
    add_option(
        robustness,
        "--out",
        type=Path,
        default=Path("reports/robustness"),
        help="Folder for the results.",
    )
    robustness.set_defaults(run=run)


def _serving_factor() -> float:
    from service.settings import Settings

    default: float = Settings.model_fields["max_feature_range_factor"].default
    return default


def run(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.offline.bench import default_specs
    from perfserve.benchmarks.robustness.report import write_robustness
    from perfserve.benchmarks.robustness.run import run_robustness
    from service.store import load_manifest

    if args.max_feature_range_factor < 0:
        raise UsageError("--max-feature-range-factor must be >= 0 (0: no range guard)")
    if any(k < 1 for k in args.missing_k):
        raise UsageError("--missing-k: every k must be at least 1")
    manifest = load_manifest(args.store)
    specs = default_specs(args.store, manifest, args.variants)
    summary = run_robustness(
        args.store,
        manifest,
        specs,
        args.perturbations,
        args.max_feature_range_factor,
        args.missing_k,
        args.seed,
    )
    paths = write_robustness(summary, args.out)
    print(paths["report"].read_text())
    print(f"results in {args.out}/ ({summary.elapsed_seconds:.1f} s)")
    return ExitCode.ANSWERED

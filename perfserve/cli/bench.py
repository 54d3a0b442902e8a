"""The benchmark subcommands of `perfserve`: bench, decide, compare, history.

`perfserve capacity` plans from their results: perfserve/benchmarks/capacity/capacity_command.py."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from perfserve.benchmarks.offline.options import (
    add_measurement_options,
    delays,
    measure,
    name_list,
    record,
)
from perfserve.cli.exit_codes import ExitCode
from perfserve_common.usage import MissingTool, UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(bench: argparse.ArgumentParser) -> None:
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
    add_option(
        bench,
        "--int8-methods",
        action="store_true",
        help="also measure every int8 method the build wrote (dynamic, per row, static), "
        "as int8_<method>",
    )
    add_option(
        bench,
        "--fail-on-regression",
        action="store_true",
        help="Exit 1 when the history flags a regression (for CI).",
    )
    add_dataset_options(bench)
    bench.set_defaults(run=run)


def add_dataset_options(bench: argparse.ArgumentParser) -> None:
    """`--dataset FILE` turns the bench into a data-volume run (perfserve/benchmarks/dataset)."""
    group = bench.add_argument_group("data volume (instead of the hold-out bench)")
    add_option(
        group,  # type: ignore[arg-type]
        "--dataset",
        type=Path,
        help="Score this whole CSV or Parquet file (the store's feature columns, the target "
        "optional) with each variant: rows/s, total time, quality, peak RSS.",
    )
    where = group.add_mutually_exclusive_group()
    add_option(
        where,  # type: ignore[arg-type]
        "--dask",
        action="store_true",
        help="With --dataset: run on a Dask LocalCluster, one worker per usable core.",
    )
    add_option(
        where,  # type: ignore[arg-type]
        "--dask-scheduler",
        metavar="ADDRESS",
        help="With --dataset: run on an existing Dask cluster, e.g. tcp://HOST:8786 (its "
        "workers need perfserve installed and the store at the same path).",
    )
    add_option(
        group,  # type: ignore[arg-type]
        "--chunk-rows",
        type=int,
        default=65536,
        help="With --dataset: rows per model call; memory stays flat at any file size.",
    )
    add_option(
        group,  # type: ignore[arg-type]
        "--generate-rows",
        type=int,
        help="First write --dataset with this many rows drawn from the store's data "
        "(hold-out rows resampled, jittered by 5%% of each feature's training std).",
    )


def run(args: argparse.Namespace) -> int:
    if args.dataset is not None:
        return run_dataset(args)
    if args.dask or args.dask_scheduler or args.generate_rows:
        raise UsageError("--dask, --dask-scheduler and --generate-rows go with --dataset FILE")
    from perfserve.benchmarks.gate.score import parse_weights
    from perfserve.benchmarks.offline.bench import default_specs
    from perfserve.benchmarks.offline.report import write_outputs
    from service.store import load_manifest

    manifest = load_manifest(args.store)
    weights = parse_weights(args.weights)
    specs = default_specs(args.store, manifest, args.variants)
    if args.int8_methods:
        from perfserve.benchmarks.offline.precision import int8_method_specs

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
    return ExitCode.NO if args.fail_on_regression and not steady else ExitCode.ANSWERED


def run_dataset(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.dataset.scheduler import check_reachable

    if args.dask_scheduler is not None:
        check_reachable(args.dask_scheduler)
    try:
        from perfserve.benchmarks.dataset.generate import generate
        from perfserve.benchmarks.dataset.reading import layout
        from perfserve.benchmarks.dataset.run import Where, render, score_dataset
    except ImportError as missing:
        raise MissingTool(
            f"--dataset needs pyarrow ({missing.name} is not installed): "
            "pip install 'perfserve[dataset]'"
        ) from None
    from perfserve.benchmarks.offline.bench import default_specs
    from service.store import load_manifest

    if args.chunk_rows < 1 or (args.generate_rows is not None and args.generate_rows < 1):
        raise UsageError("--chunk-rows and --generate-rows must be at least 1")
    manifest = load_manifest(args.store)
    names = [spec.name for spec in default_specs(args.store, manifest, args.variants)]
    if args.generate_rows:
        generate(args.store, manifest, args.generate_rows, args.dataset)
    source = layout(args.dataset, manifest)
    where = Where(local_cluster=args.dask, scheduler=args.dask_scheduler)
    result = score_dataset(args.store, manifest, source, names, where, args.chunk_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataset.json").write_text(result.model_dump_json(indent=2))
    print(render(result))
    print(f"results in {args.out}/dataset.json")
    return ExitCode.ANSWERED

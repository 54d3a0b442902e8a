"""`perfserve build`: train the reference model (or take yours) and write the model store."""

from __future__ import annotations

import argparse
from pathlib import Path

from perfserve_common.usage import UsageError, add_option
from service.store import Manifest


def add_arguments(build: argparse.ArgumentParser) -> None:
    build.description = (
        "Train the reference model (or take yours), convert it to ONNX, quantize "
        "it to int8, score every variant on the hold-out set, and write the store."
    )
    add_option(build, "--store", type=Path, default=Path("model_store"), help="Folder to write.")
    add_option(
        build,
        "--model",
        type=Path,
        help="Your fitted scikit-learn pipeline, a joblib file (default: train the reference).",
    )
    add_option(build, "--data", type=Path, help="Your hold-out set: a CSV with a header row.")
    add_option(build, "--target", help="The target column of --data.")
    add_option(
        build,
        "--example",
        choices=["small", "wide"],
        default="small",
        help="Which bundled example to train without --model: small (breast cancer, a "
        "64-32 MLP) or wide (digits, a 1024-1024 MLP whose matrix products int8 can speed up).",
    )
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perfserve.modelstore.build import build_from_files, build_store

    given = [args.model, args.data, args.target]
    if any(given) and not all(given):
        raise UsageError("--model, --data and --target go together")
    if args.model and args.example != "small":
        raise UsageError("--example trains a bundled model; it does not go with --model")
    if args.model:
        manifest = build_from_files(args.store, args.model, args.data, args.target)
    else:
        manifest = build_store(args.store, example=args.example)
    print(describe_store(args.store, manifest))
    return 0


def describe_store(store: Path, manifest: Manifest) -> str:
    headline = "accuracy" if manifest.task == "classification" else "rmse"
    lines = [
        f"model store {store}: {manifest.model_name}, {manifest.n_features} features, "
        f"hold-out {manifest.holdout.rows} rows",
        f"{'variant':<14}{'format':<9}{'precision':<11}{'size':>10}{headline:>10}{'agree':>8}",
    ]
    for info in manifest.variants.values():
        lines.append(
            f"{info.name:<14}{info.format:<9}{info.precision:<11}"
            f"{info.file_size_bytes / 1024:>8.1f}kB{info.metrics[headline]:>10.4f}"
            f"{info.agreement_with_reference:>8.3f}"
        )
    if manifest.int8 is not None and manifest.int8.chosen is not None:
        lines.append(f"onnx_int8 is {manifest.int8.reason}")
    lines += [f"skipped {name}: {reason}" for name, reason in manifest.skipped.items()]
    return "\n".join(lines)

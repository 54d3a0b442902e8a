"""Which precision and method answers fastest at each batch size at equal quality: fp32,
dynamic int8 or static int8 (per tensor or per channel), each as it would be served.

`perfserve bench --int8-methods` adds every int8 method `perfserve build` wrote to the
variants measured; this module names them and builds the table the report leads with. Equal
quality means the bounds the build itself applies (perfserve/modelstore/int8.py): agreement
with the reference on the hold-out and at most a small accuracy drop. A variant whose
answers depend on their batch-mates is listed but never called fastest: the batcher would
let one client's rows change another's answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfserve.benchmarks.offline.bench import VariantSpec
from perfserve.benchmarks.offline.summary_types import FastestRow, MeasuredVariant, PrecisionEntry
from perfserve.modelstore.int8 import MAX_ACCURACY_DROP, MIN_AGREEMENT
from service.store import Manifest, StoreError, VariantInfo

PREFIX = "int8_"


def int8_method_specs(store_specs: list[VariantSpec], manifest: Manifest) -> list[VariantSpec]:
    """One extra variant per int8 method of the store, named `int8_<method>`."""
    if manifest.int8 is None:
        raise StoreError(
            "this store records no int8 methods (a model without matrix products, or a store "
            "built before they were kept); rebuild it with `perfserve build`"
        )
    store = store_specs[0].store
    fp32 = manifest.variants["onnx_fp32"]
    specs = []
    for method, candidate in manifest.int8.candidates.items():
        info = VariantInfo(
            name=PREFIX + method,
            format="onnx",
            precision="int8",
            path=candidate.path,
            file_size_bytes=(store / candidate.path).stat().st_size,
            sha256=candidate.sha256,
            model_version=fp32.model_version,
            metrics=candidate.metrics,
            agreement_with_reference=candidate.agreement_with_reference,
            metric_deltas={},
            operators=[],
            method=method,
            per_row=candidate.per_row,
        )
        specs.append(VariantSpec(info.name, info, store))
    return specs


def label(variant: MeasuredVariant) -> str:
    """`fp32 sklearn`, `fp32 onnx`, `int8 static_per_channel`, ..."""
    return f"{variant['precision']} {variant.get('method') or variant['format']}"


def fastest_by_batch_size(
    variants: Mapping[str, MeasuredVariant],
    batch_sizes: Sequence[int],
    min_effect: float,
    reference: Mapping[str, float],
) -> list[FastestRow]:
    """Per batch size: each variant's median µs per call over the runs, whether its quality
    equals the reference's (within the build's bounds) and whether it is batch-independent;
    the fastest variant that is both, and the others that are within noise of it.

    "Within noise": run by run, the variant's time over the fastest's (runs are taken
    side by side, so shared load cancels), median ratio under 1 + `min_effect`.
    """
    rows: list[FastestRow] = []
    for size in batch_sizes:
        runs = {
            name: np.asarray(variant["batches"][str(size)]["run_means_ms"]) * 1000
            for name, variant in variants.items()
        }
        entries: list[PrecisionEntry] = [
            {
                "variant": name,
                "precision_method": label(variant),
                "per_call_us": float(np.median(runs[name])),
                "equal_quality": _equal_quality(variant, reference),
                "batch_independent": variant["batch_independent"],
            }
            for name, variant in variants.items()
        ]
        eligible = [e for e in entries if e["equal_quality"] and e["batch_independent"]]
        fastest = min(eligible, key=lambda e: e["per_call_us"]) if eligible else None
        tied = [
            e["variant"]
            for e in eligible
            if fastest is not None
            and e is not fastest
            and np.median(runs[e["variant"]] / runs[fastest["variant"]]) < 1 + min_effect
        ]
        rows.append(
            {
                "batch_size": size,
                "fastest": None if fastest is None else fastest["variant"],
                "fastest_precision_method": None
                if fastest is None
                else fastest["precision_method"],
                "within_noise": tied,
                "variants": entries,
            }
        )
    return rows


def render(rows: Sequence[FastestRow]) -> list[str]:
    """The table as Markdown lines: median µs per call, `*` fastest, `~` within noise of
    it, `q` quality outside bounds, `b` answers depend on batch-mates."""
    names = [entry["variant"] for entry in rows[0]["variants"]]
    lines = [
        "| batch | fastest at equal quality | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for row in rows:
        cells = []
        for entry in row["variants"]:
            marks = "*" if entry["variant"] == row["fastest"] else ""
            marks += "~" if entry["variant"] in row["within_noise"] else ""
            marks += "" if entry["equal_quality"] else " q"
            marks += "" if entry["batch_independent"] else " b"
            cells.append(f"{entry['per_call_us']:.1f}{marks}")
        fastest = row["fastest_precision_method"] or "none qualifies"
        if row["within_noise"]:
            fastest += f" (~ {len(row['within_noise'])} within noise)"
        lines.append(f"| {row['batch_size']} | {fastest} | " + " | ".join(cells) + " |")
    return lines


def _equal_quality(variant: MeasuredVariant, reference: Mapping[str, float]) -> bool:
    if variant["agreement_with_reference"] < MIN_AGREEMENT:
        return False
    if "accuracy" in reference:
        drop: float = reference["accuracy"] - variant["quality"]["accuracy"]
        return drop <= MAX_ACCURACY_DROP
    return True

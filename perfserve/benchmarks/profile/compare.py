"""`perfserve profile --compare A B`: what moved between two profiles, stage by stage.

Each profile holds its stages' µs/request in every repeat; the spread of those repeats
is each profile's run-to-run noise. A stage has moved when its difference exceeds the
Welch t bound of the difference (both profiles' repeats, Welch-Satterthwaite degrees of
freedom) at a false-alarm rate of `FAMILY_ALPHA` across all ten stages together
(Bonferroni), and also `RELATIVE_FLOOR` of the stage's larger cost and
`ABSOLUTE_FLOOR_US`: the repeats of one profile run minutes apart from the other's, on a
machine whose speed drifts, so a few repeats alone understate the noise between two
profiles. The differential flame
graph draws B's stacks coloured by how each frame moved from A (both in µs/request).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from perfserve.benchmarks.profile.flamegraph import render
from perfserve.benchmarks.profile.outputs import load_profile
from perfserve.benchmarks.profile.stages import STAGES

FAMILY_ALPHA = 0.05
RELATIVE_FLOOR = 0.15
ABSOLUTE_FLOOR_US = 3.0
BATCH_RATIO_LIMIT = 1.25
"""Median batch sizes further apart than this make the model's µs/request differ by the
load as well as by the code: a model call's fixed cost is shared by more or fewer rows."""
METHOD = (
    f"moved when |B - A| > max(t x sqrt(sd_A^2/n_A + sd_B^2/n_B), {RELATIVE_FLOOR:.0%} of "
    f"max(A, B), {ABSOLUTE_FLOOR_US:g} µs); sd over each profile's profiled repeats (its "
    f"run-to-run noise); t the two-sided Student quantile at {FAMILY_ALPHA:g}/{len(STAGES)} "
    "(Bonferroni over the stages) with Welch-Satterthwaite degrees of freedom"
)


def stage_difference(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage: both costs, the difference, the noise it is judged against."""
    rows = []
    for stage in STAGES:
        cost_a = a["table"]["us_per_request"][stage]
        cost_b = b["table"]["us_per_request"][stage]
        spread = [_repeat_sd(profile, stage) for profile in (a, b)]
        standard_error = math.sqrt(sum(sd**2 / n for sd, n in spread))
        threshold = max(
            _t_bound(spread) * standard_error,
            RELATIVE_FLOOR * max(cost_a, cost_b),
            ABSOLUTE_FLOOR_US,
        )
        difference = cost_b - cost_a
        rows.append(
            {
                "stage": stage,
                "a_us": cost_a,
                "b_us": cost_b,
                "difference_us": difference,
                "noise_se_us": standard_error,
                "threshold_us": threshold,
                "moved": abs(difference) > threshold,
            }
        )
    return rows


def _t_bound(spread: list[tuple[float, int]]) -> float:
    """The two-sided Student quantile for the Bonferroni-corrected false-alarm rate, at
    the Welch-Satterthwaite degrees of freedom of the two profiles' repeats."""
    from scipy.stats import t

    parts = [sd**2 / n for sd, n in spread]
    denominator = sum(p**2 / (n - 1) for p, (_, n) in zip(parts, spread, strict=True) if n > 1)
    dof = sum(parts) ** 2 / denominator if denominator > 0 else 1.0
    return float(t.ppf(1 - FAMILY_ALPHA / len(STAGES) / 2, max(1.0, dof)))


def _repeat_sd(profile: dict[str, Any], stage: str) -> tuple[float, int]:
    values = [r["us_per_request"][stage] for r in profile["repeats"]]
    if len(values) < 2:
        return 0.0, 1
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)), len(values)


def compare(folder_a: Path, folder_b: Path, out: Path) -> tuple[str, list[dict[str, Any]]]:
    """Write compare.json, compare.md and diff-flamegraph.svg into `out`; returns the
    Markdown and the rows."""
    a, weights_a = load_profile(folder_a)
    b, weights_b = load_profile(folder_b)
    rows = stage_difference(a, b)
    out.mkdir(parents=True, exist_ok=True)
    moved = [row["stage"] for row in rows if row["moved"]]
    document = {"a": str(folder_a), "b": str(folder_b), "method": METHOD, "stages": rows,
                "moved": moved, "batching": batching(a, b)}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(document, indent=2))
    text = compare_text(folder_a, folder_b, a, b, rows)
    (out / "compare.md").write_text(text)
    title = f"{_name(b)} against {_name(a)}: µs per request"
    render(weights_b, title, out / "diff-flamegraph.svg", weights_a)
    return text, rows


def batching(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Each profile's median batch size, and whether they differ by more than
    `BATCH_RATIO_LIMIT`. py-spy pauses the server for every sample and requests pile up
    behind the pauses, so a profiled server batches more than it does unprofiled, and by
    an amount that changes from run to run."""
    sizes = [p.get("load", {}).get("median_of_repeats", {}).get("batch_size") for p in (a, b)]
    known = all(isinstance(size, float | int) and size > 0 for size in sizes)
    differ = known and max(sizes) / min(sizes) > BATCH_RATIO_LIMIT
    return {"a_batch_size": sizes[0], "b_batch_size": sizes[1], "differ": differ}


def _batching_warning(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    found = batching(a, b)
    if not found["differ"]:
        return []
    return [
        f"The two batched differently (median batch A {found['a_batch_size']:.1f} rows, "
        f"B {found['b_batch_size']:.1f}): a model call's fixed cost is shared by more or "
        "fewer requests, so `model` (and the batch's other per-call costs) differ by the "
        "load as well as by the code. For a comparison of code, profile both with batching "
        "off (PERFSERVE_MAX_BATCH_SIZE=1) or at a rate where their batches match.",
        "",
    ]


def _name(profile: dict[str, Any]) -> str:
    s = profile["settings"]
    return f"{s['variant']} at {s['rate']:,.0f}/s"


def compare_text(
    folder_a: Path, folder_b: Path, a: dict[str, Any], b: dict[str, Any], rows: list[dict[str, Any]]
) -> str:
    lines = [
        f"# {folder_b} against {folder_a}",
        "",
        f"A: {_name(a)}, {a['table']['measured_us']:.1f} µs/request measured; "
        f"B: {_name(b)}, {b['table']['measured_us']:.1f} µs/request measured.",
        "",
        "| stage | A µs/req | B µs/req | B - A | noise (se) | threshold | moved |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['stage']} | {row['a_us']:.1f} | {row['b_us']:.1f} | "
            f"{row['difference_us']:+.1f} | {row['noise_se_us']:.1f} | "
            f"{row['threshold_us']:.1f} | {'**moved**' if row['moved'] else '-'} |"
        )
    moved = [row["stage"] for row in rows if row["moved"]]
    lines += [
        "",
        f"Moved beyond run-to-run noise: {', '.join(moved) if moved else 'no stage'}.",
        "",
        *_batching_warning(a, b),
        f"Method: {METHOD}.",
        "",
    ]
    return "\n".join(lines)

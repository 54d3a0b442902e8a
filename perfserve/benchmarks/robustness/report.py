"""A robustness run written out: robustness.csv (one row per variant and condition),
sensitivity.csv, robustness.json (the whole summary, read back by `perfserve decide`),
degradation.png (one panel per perturbation) and report.md."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI

import matplotlib.pyplot as plt

from perfserve.benchmarks.robustness.perturbations import PERTURBATIONS
from perfserve.benchmarks.robustness.run import SENSITIVE_SHOWN, RobustnessSummary
from perfserve_common.usage import UsageError

SUMMARY_FILE = "robustness.json"
CSV_FIELDS = [
    "variant",
    "perturbation",
    "label",
    "size",
    "feature",
    "quality",
    "quality_low",
    "quality_high",
    "agreement",
    "agreement_low",
    "agreement_high",
    "gap",
    "gap_low",
    "gap_high",
    "refused_share",
]


def write_robustness(summary: RobustnessSummary, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / SUMMARY_FILE,
        "csv": out / "robustness.csv",
        "sensitivity": out / "sensitivity.csv",
        "plot": out / "degradation.png",
        "report": out / "report.md",
    }
    paths["json"].write_text(summary.model_dump_json(indent=2))
    _write_csv(summary, paths["csv"])
    _write_sensitivity(summary, paths["sensitivity"])
    plot_degradation(summary, paths["plot"])
    paths["report"].write_text(render_report(summary))
    return paths


def load_robustness(folder: Path) -> RobustnessSummary:
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise UsageError(
            f"no robustness results at {folder} (missing {SUMMARY_FILE}); run "
            f"`perfserve robustness --out {folder}`"
        )
    return RobustnessSummary.model_validate_json(path.read_bytes())


def _write_csv(summary: RobustnessSummary, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_FIELDS)
        for o in summary.outcomes:
            writer.writerow(
                [o.variant, o.perturbation, o.label, o.size, o.feature or ""]
                + [
                    f"{v:.6g}"
                    for e in (o.quality, o.agreement, o.gap)
                    for v in (e.value, e.low, e.high)
                ]
                + [f"{o.refused_share:.4g}"]
            )


def _write_sensitivity(summary: RobustnessSummary, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["variant", "perturbation", "feature", "drop"])
        for s in summary.sensitivity:
            writer.writerow([s.variant, s.perturbation, s.feature, f"{s.drop:.6g}"])


def plot_degradation(summary: RobustnessSummary, path: Path) -> None:
    """Quality against perturbation size, one panel per perturbation, 95% intervals as bars."""
    measured = {o.perturbation for o in summary.outcomes if o.feature is None}
    kinds = [kind for kind in PERTURBATIONS if kind in measured]
    variants = list(dict.fromkeys(o.variant for o in summary.outcomes))
    fig, axes = plt.subplots(
        1, max(len(kinds), 1), figsize=(4.2 * max(len(kinds), 1), 4), layout="constrained"
    )
    panels = list(axes) if len(kinds) > 1 else [axes]
    for axis, kind in zip(panels, kinds, strict=False):
        for index, variant in enumerate(variants):
            curve = summary.curve(variant, kind)
            labels = [o.label for o in curve]
            values = [o.quality.value for o in curve]
            errors = [
                [o.quality.value - o.quality.low for o in curve],
                [o.quality.high - o.quality.value for o in curve],
            ]
            # Offsets keep the variants' bars apart where they overlap.
            positions = [i + (index - (len(variants) - 1) / 2) * 0.08 for i in range(len(curve))]
            axis.errorbar(
                positions,
                values,
                yerr=errors,
                marker="o",
                capsize=3,
                label=variant,
                color=f"C{index}",
            )
            axis.set_xticks(range(len(labels)), labels)
        axis.set_title(kind)
        axis.set_xlabel(_axis_label(kind))
        axis.set_ylabel(summary.metric)
        axis.grid(alpha=0.3)
    panels[0].legend(fontsize="small")
    fig.suptitle(f"{summary.model_name}: {summary.metric} under perturbation (95% bootstrap CI)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axis_label(kind: str) -> str:
    return {
        "noise": "Gaussian noise, training std",
        "missing": "features missing per row (median-filled)",
        "shift": "every feature scaled or offset",
        "edge": "share of the range guard's margin",
    }.get(kind, kind)


def render_report(summary: RobustnessSummary) -> str:
    metric = summary.metric
    lines = [
        "## Robustness",
        "",
        f"{summary.model_name} ({summary.task}), {summary.holdout_rows} hold-out rows; "
        f"perturbations scaled by {summary.statistics_source} statistics; range guard factor "
        f"{summary.guard_factor:g}; seed {summary.seed}. Intervals: 95% bootstrap over rows.",
    ]
    if summary.caveat:
        lines += ["", f"Caveat: {summary.caveat}."]
    variants = list(dict.fromkeys(o.variant for o in summary.outcomes))
    lines += ["", "| condition | " + " | ".join(variants) + " | refused (422) |"]
    lines.append("|---" * (len(variants) + 2) + "|")
    conditions = list(
        dict.fromkeys((o.perturbation, o.label) for o in summary.outcomes if o.feature is None)
    )
    for kind, label in conditions:
        key = "clean" if kind == "clean" else f"{kind}:{label}"
        cells, refused = [], 0.0
        for variant in variants:
            o = summary.quality_under(variant, key)
            if o is None:
                cells.append("-")
                continue
            refused = o.refused_share
            cells.append(f"{o.quality.value:.4f} [{o.quality.low:.4f}, {o.quality.high:.4f}]")
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {refused:.0%} |")
    lines += ["", f"Most sensitive features ({metric} lost when that feature alone is perturbed):"]
    for variant in variants:
        for kind in dict.fromkeys(s.perturbation for s in summary.sensitivity):
            top = [
                s for s in summary.sensitivity if s.variant == variant and s.perturbation == kind
            ]
            shown = ", ".join(f"{s.feature} ({s.drop:+.4f})" for s in top[:SENSITIVE_SHOWN])
            lines.append(f"- {variant}, {kind}: {shown}")
    lines += [
        "",
        f"Where variants part ways with {summary.reference} (paired gap's 95% CI excludes 0):",
    ]
    if not summary.divergences:
        lines.append("- nowhere: every variant's gap to the reference is within chance")
    for d in summary.divergences:
        lines.append(
            f"- {d.variant} under {d.condition}: {metric} gap {d.gap:+.4f} "
            f"[{d.low:+.4f}, {d.high:+.4f}], agreement {d.agreement:.1%}"
        )
    return "\n".join(lines) + "\n"

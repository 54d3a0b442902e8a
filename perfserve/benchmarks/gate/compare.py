"""`perfserve compare`: the promotion gate between a baseline and a candidate.

Both run through the same bench (interleaved, paired), on the same hold-out; the gate
then applies rules a team sets once (a YAML file, or flags). Quality is deterministic on
a fixed hold-out, so its rules use the values; timings are noisy, so a latency or
throughput rule only fires on a difference that is statistically significant and whose
95% interval is past the rule's limit at its near end (on a loaded host a point estimate
past 5% with an interval that only excludes zero came up for two copies of one model).

rules.yaml (every key optional; these are the defaults):

    max_accuracy_drop: 0.0        # absolute; a regressor uses max_rmse_increase (relative)
    max_rmse_increase: 0.0
    min_agreement: 0.0            # share of hold-out rows answered like the reference
    max_latency_increase: 0.05    # relative, per batch size: the rise its 95% CI is sure of
    max_throughput_drop: 0.05     # relative: the drop its 95% CI is sure of
    max_memory_increase_mb: 64    # load + peak per call, absolute
    max_size_increase: 0.5        # artifact file size, relative
    max_robustness_drop: .inf     # under each noise and shift condition (`perfserve
                                  # robustness`), absolute accuracy (regressor: relative rmse);
                                  # set, compare also scores both variants on perturbed rows
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import yaml

from perfserve.benchmarks.figures import figures_from_summary, headline_metric
from perfserve.benchmarks.offline.summary_types import BenchSummary, SpeedComparison
from perfserve.benchmarks.statistics import ALPHA
from perfserve_common.usage import UsageError

if TYPE_CHECKING:
    from perfserve.benchmarks.robustness.run import RobustnessSummary

MIB = 2**20


@dataclass(frozen=True)
class Rules:
    max_accuracy_drop: float = 0.0
    max_rmse_increase: float = 0.0
    min_agreement: float = 0.0
    max_latency_increase: float = 0.05
    max_throughput_drop: float = 0.05
    max_memory_increase_mb: float = 64.0
    max_size_increase: float = 0.5
    max_robustness_drop: float = math.inf

    @property
    def gates_robustness(self) -> bool:
        return math.isfinite(self.max_robustness_drop)


def load_rules(path: Path | None, overrides: dict[str, float | None]) -> Rules:
    """Defaults, then the rules file, then flags given on the command line."""
    rules = Rules()
    if path is not None:
        if not path.is_file():
            raise UsageError(f"no rules file at {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise UsageError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path} must be a mapping of rule: value")
        rules = _with(rules, data, str(path))
    return _with(rules, {k: v for k, v in overrides.items() if v is not None}, "flags")


def _with(rules: Rules, values: dict[str, Any], origin: str) -> Rules:
    known = {field.name for field in fields(Rules)}
    unknown = set(values) - known
    if unknown:
        raise UsageError(f"unknown rule(s) in {origin}: {sorted(unknown)}; known: {sorted(known)}")
    try:
        return replace(rules, **{name: float(value) for name, value in values.items()})
    except (TypeError, ValueError):
        raise UsageError(f"every rule in {origin} needs a number: {values}") from None


class GateRow(TypedDict):
    """One line of the side-by-side table (compare.json's `table`)."""

    dimension: str
    baseline: float | None
    candidate: float
    delta: float | None
    significance: str


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reasons: list[str]
    """One sentence per broken rule (empty when promoted)."""
    table: list[GateRow]
    """Side by side, one row per dimension compared."""


def gate(
    summary: BenchSummary,
    baseline: str,
    candidate: str,
    rules: Rules,
    robustness: RobustnessSummary | None = None,
) -> GateResult:
    """`robustness` holds both variants under perturbation when `max_robustness_drop` is set."""
    table: list[GateRow] = []
    reasons: list[str] = []
    reasons += _quality(summary, baseline, candidate, rules, table)
    for row in summary["comparisons"]:
        if row["candidate"] == candidate:
            reasons += _speed(row, rules, table)
    reasons += _resources(summary, baseline, candidate, rules, table)
    if robustness is not None and rules.gates_robustness:
        reasons += drop_reasons(robustness, baseline, candidate, rules.max_robustness_drop, table)
    return GateResult(not reasons, reasons, table)


def _quality(
    summary: BenchSummary,
    baseline: str,
    candidate: str,
    rules: Rules,
    table: list[GateRow],
) -> list[str]:
    metric = headline_metric(summary["task"])
    row = next(q for q in summary["quality_comparisons"] if q["candidate"] == candidate)
    was, now = row["baseline_value"], row["candidate_value"]
    table.append(_row(metric, was, now, now - was, f"{row['test']} p={row['p_value']:.2g}"))
    agreement = summary["variants"][candidate]["agreement_with_reference"]
    table.append(_row("agreement_with_reference", None, agreement, None, ""))
    reasons = []
    if metric == "accuracy" and was - now > rules.max_accuracy_drop:
        reasons.append(
            f"accuracy drops {was - now:.4f} ({was:.4f} -> {now:.4f}), more than "
            f"max_accuracy_drop {rules.max_accuracy_drop:g} (McNemar p = {row['p_value']:.2g})"
        )
    if metric == "rmse" and now > was * (1 + rules.max_rmse_increase):
        reasons.append(
            f"rmse rises {now / was - 1:+.1%} ({was:.4g} -> {now:.4g}), more than "
            f"max_rmse_increase {rules.max_rmse_increase:.0%}"
        )
    if agreement < rules.min_agreement:
        reasons.append(f"agreement with the reference {agreement:.1%} < {rules.min_agreement:.1%}")
    return reasons


def _speed(row: SpeedComparison, rules: Rules, table: list[GateRow]) -> list[str]:
    size = row["batch_size"]
    significant = row["p_value"] < ALPHA and (row["ci_low"] > 0 or row["ci_high"] < 0)
    note = f"d={row['cohens_d']:.2f} p={row['p_value']:.2g} {row['verdict']}"
    table.append(
        _row(
            f"ms/call @{size}", row["baseline_mean"], row["candidate_mean"], row["difference"], note
        )
    )
    throughput_change = row["baseline_mean"] / row["candidate_mean"] - 1
    table.append(
        _row(f"throughput @{size}", 1.0, 1 + throughput_change, throughput_change, "relative")
    )
    # The near end of the difference's interval: the rise the bench is 95% sure of.
    sure_rise = row["ci_low"] / row["baseline_mean"]
    sure_drop = 1 - 1 / (1 + sure_rise) if sure_rise > -1 else 0.0
    reasons = []
    if significant and sure_rise > rules.max_latency_increase:
        reasons.append(
            f"latency at batch {size} rises {row['relative']:+.1%}, at least {sure_rise:+.1%} "
            f"(95% CI; p = {row['p_value']:.2g}, d = {row['cohens_d']:.2f}), more than "
            f"max_latency_increase {rules.max_latency_increase:.0%}"
        )
    if significant and sure_drop > rules.max_throughput_drop:
        reasons.append(
            f"throughput at batch {size} drops {-throughput_change:.1%}, at least "
            f"{sure_drop:.1%} (95% CI), more than max_throughput_drop "
            f"{rules.max_throughput_drop:.0%}"
        )
    return reasons


def _resources(
    summary: BenchSummary,
    baseline: str,
    candidate: str,
    rules: Rules,
    table: list[GateRow],
) -> list[str]:
    reasons = []
    memory = {f.variant: f.memory_bytes / MIB for f in figures_from_summary(summary)}
    was, now = memory[baseline], memory[candidate]
    table.append(_row("memory MiB", was, now, now - was, "load + peak per call"))
    if now - was > rules.max_memory_increase_mb:
        reasons.append(
            f"memory rises {now - was:.1f} MiB ({was:.1f} -> {now:.1f}), more than "
            f"max_memory_increase_mb {rules.max_memory_increase_mb:g}"
        )
    size_was = summary["variants"][baseline]["file_size_bytes"]
    size_now = summary["variants"][candidate]["file_size_bytes"]
    table.append(_row("file bytes", size_was, size_now, size_now - size_was, ""))
    if size_now > size_was * (1 + rules.max_size_increase):
        reasons.append(
            f"artifact grows {size_now / size_was - 1:+.0%} ({size_was:,} -> {size_now:,} bytes), "
            f"more than max_size_increase {rules.max_size_increase:.0%}"
        )
    return reasons


def drop_reasons(
    summary: RobustnessSummary,
    baseline: str,
    candidate: str,
    max_drop: float,
    table: list[GateRow],
) -> list[str]:
    """`max_robustness_drop`, per condition, the candidate against the baseline on the same
    perturbed rows: absolute for accuracy, relative for RMSE (as the clean-quality rules
    are)."""
    reasons = []
    for was in summary.outcomes:
        if was.variant != baseline or was.feature is not None or was.perturbation == "clean":
            continue
        key = f"{was.perturbation}:{was.label}"
        now = summary.quality_under(candidate, key)
        if now is None:
            continue
        before, after = was.quality.value, now.quality.value
        drop = after / before - 1 if summary.metric == "rmse" else before - after
        table.append(_row(f"{summary.metric} {key}", before, after, after - before, "robustness"))
        if drop > max_drop:
            reasons.append(
                f"under {key} {summary.metric} is {after:.4f} against the baseline's "
                f"{before:.4f}: worse by {drop:.4f}, more than max_robustness_drop {max_drop:g}"
            )
    return reasons


def _row(
    dimension: str, baseline: float | None, candidate: float, delta: float | None, note: str
) -> GateRow:
    return {
        "dimension": dimension,
        "baseline": baseline,
        "candidate": candidate,
        "delta": delta,
        "significance": note,
    }


def render_gate(result: GateResult, baseline: str, candidate: str) -> str:
    lines = [f"{'':<26}{baseline:>16}{candidate:>16}{'delta':>12}  significance"]
    for row in result.table:
        lines.append(
            f"{row['dimension']:<26}{_fmt(row['baseline']):>16}{_fmt(row['candidate']):>16}"
            f"{_fmt(row['delta']):>12}  {row['significance']}"
        )
    if result.promote:
        lines.append(f"verdict: PROMOTE {candidate}")
    else:
        lines.append(f"verdict: REJECT {candidate}")
        lines += [f"  - {reason}" for reason in result.reasons]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"

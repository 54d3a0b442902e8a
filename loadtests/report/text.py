"""Plain-text views for the terminal: latency lines, the progress line and the knee table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from loadtests.recorder import percentile_ms
from loadtests.report.answer import DASH, core_speed_sentence, knee_text
from loadtests.report.headline import headline

if TYPE_CHECKING:
    from loadtests.sweep.runner import SweepReport, TargetReport

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def latency_line(label: str, histogram: HdrHistogram) -> str:
    """`label: n=…  p50 … p99.9 … max … ms` from an HdrHistogram of microseconds."""
    count = histogram.get_total_count()
    if not count:
        return f"{label}: no answers"
    parts = [f"p{p:g} {percentile_ms(histogram, p):.3f}" for p in PERCENTILES]
    parts.append(f"max {histogram.get_max_value() / 1000:.3f}")
    return f"{label}: n={count}  " + "  ".join(parts) + " ms"


def knee_table(report: SweepReport) -> str:
    """Per target: the knee ("≥" when it is only a lower bound) and its interval over the
    rounds, what limited it, and the step at the knee."""
    slo = report.plan.steps.slo_p99_ms
    lines = [
        f"knee = highest QPS holding p99 <= {slo:g} ms (latency from scheduled send time), "
        f"median of {report.plan.rounds} round(s); ≥: a lower bound, the server may hold more",
        f"{'target':<14}{'knee QPS':>10}{'interval':>17}  {'limited by':<11}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'queue ms':>9}{'batch':>7}{'util':>6}{'steps':>6}",
    ]
    if not report.conclusive:
        lines.insert(0, f"NOT CONCLUSIVE ({report.inconclusive_reason}): measured, not an answer")
    for target in report.targets:
        knee = knee_text(target.knee.qps, target.knee.is_lower_bound)
        line = f"{target.target:<14}{knee:>10}{_interval(target):>17}  {target.knee.limited_by:<11}"
        step = target.knee.step
        if step is not None:
            line += (
                f"{step.client.p50_ms:>8.2f}{step.client.p99_ms:>8.2f}"
                f"{step.server.queue_ms:>9.3f}{step.server.mean_batch_rows:>7.1f}"
                f"{step.server.utilization:>6.2f}"
            )
        else:
            line += " " * 38
        lines.append(f"{line}{len(target.steps):>6}")
    if steadiness := core_speed_sentence(report.conditions):
        lines.append(steadiness)
    return "\n".join(lines)


def _interval(target: TargetReport) -> str:
    """`9,600 to 11,200` (with an en dash), `9,600 to ?` (no upper end known) or `-`."""
    interval = target.interval
    if interval is None or interval.qps is None:
        return "-"
    low = f"{interval.low_qps or 0:,.0f}"
    return f"{low}{DASH}{'?' if interval.high_qps is None else f'{interval.high_qps:,.0f}'}"


def answers(document: dict[str, Any]) -> str:
    """The report's top sentences (loadtests/report/headline.py), from summary.json, and
    a note when the target exported none of perfserve's server-side figures."""
    lines = headline(document)
    if note := document.get("server_metrics_note"):
        lines.append(f"Note: {note}.")
    return "\n".join(lines)

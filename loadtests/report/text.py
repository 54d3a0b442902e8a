"""Plain-text views for the terminal: latency lines, the progress line and the knee table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from loadtests.recorder import percentile_ms
from loadtests.report.answer import answer, core_speed_sentence, knee_text

if TYPE_CHECKING:
    from loadtests.sweep.runner import SweepReport

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
    """Per target: the knee ("≥" when it is only a lower bound), what limited it, and the
    step at the knee."""
    slo = report.plan.steps.slo_p99_ms
    lines = [
        f"knee = highest QPS holding p99 <= {slo:g} ms (latency from scheduled send time); "
        "≥: a lower bound, the server may hold more",
        f"{'target':<14}{'knee QPS':>10}  {'limited by':<11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'queue ms':>9}{'batch':>7}{'util':>6}{'steps':>6}",
    ]
    for target in report.targets:
        knee = knee_text(target.knee.qps, target.knee.is_lower_bound)
        line = f"{target.target:<14}{knee:>10}  {target.knee.limited_by:<11}"
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


def answers(document: dict[str, Any]) -> str:
    """The answer sentence of every target, from summary.json's contents."""
    slo = document["slo_p99_ms"]
    lines = [answer(name, t, slo) for name, t in document["variants"].items()]
    if note := document.get("server_metrics_note"):
        lines.append(f"Note: {note}.")
    return "\n".join(lines)

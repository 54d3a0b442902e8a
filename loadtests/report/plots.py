"""The sweep's plots, as PNG files: what a reader looks at before any table.

- latency.png: client percentiles (from scheduled time) against the offered rate, one
  panel per target on one shared y-scale (so variants compare at a glance), the SLO line
  inside the frame and the knee labelled with its number ("≥" when it is a lower bound)
  over its interval, shaded; a rate measured more than once (a retry, another round)
  is one point, the median of its steps, so the line runs left to right without folding
  back; generator-bound steps only as grey crosses, since they measure the generator;
- throughput.png: per rate offered (the median of its steps), how far short of its target
  it fell and what went wrong (slower than the SLO, shed, errors, late and dropped sends,
  as shares of its requests), and how many of its steps held;
- queueing.png: measured batch-queue delay against runner utilization, with the M/D/c
  model's prediction only where the model applies (`queue_model_applies`); a point's
  rate is written beside it unless an earlier label sits too close;
- stress.png / soak.png when those ran: p99 per window through overload and recovery,
  and the server's resident memory over the soak.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from loadtests.report.answer import knee_text, queue_model_applies
from loadtests.sweep.acceptance import RATE_TOLERANCE
from loadtests.sweep.knee import GENERATOR_BOUND
from loadtests.sweep.results import StepResult
from loadtests.sweep.runner import SweepReport, TargetReport

PERCENTILE_FIELDS = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
PROBLEMS = (
    ("slower than SLO or failed", "C3"), ("shed (503)", "C1"), ("errors", "C4"),
    ("waited for a connection", "C0"), ("sent late by the generator", "C9"), ("dropped", "C7"),
)  # fmt: skip
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
"""Tick labels as plain numbers (50, 0.5), not powers of ten."""
MIN_TICK_RATIO = 1.9
"""Rates labelled on the log axis are at least this far apart: the doublings, not the
bisection's rates between them, whose labels would overlap."""
LABEL_GAP = (0.16, 0.06)
"""A rate label's width and height as shares of a queueing panel: closer points go unlabelled."""
CROWDED_STEPS = 6
"""More bars than this in a panel and their labels are slanted."""


def write_plots(report: SweepReport, out: Path) -> dict[str, Path]:
    """Every plot that has data, written into `out`; their paths by name."""
    slo = report.plan.steps.slo_p99_ms
    swept = [t for t in report.targets if t.steps]
    paths = {}
    if swept:
        paths["latency"] = _save(_latency(swept, slo), out / "latency.png")
        paths["throughput"] = _save(_throughput(swept), out / "throughput.png")
        paths["queueing"] = _save(_queueing(swept), out / "queueing.png")
    stressed = [t for t in report.targets if t.stress is not None]
    if stressed:
        paths["stress"] = _save(_stress(stressed, slo), out / "stress.png")
    soaked = [t for t in report.targets if t.soak is not None]
    if soaked:
        paths["soak"] = _save(_soak(soaked), out / "soak.png")
    return paths


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panels(count: int, rows: int = 1, sharey: bool = False) -> tuple[Figure, np.ndarray]:
    figure, axes = plt.subplots(
        rows, count, figsize=(4.6 * count + 0.8, 4.0 * rows), squeeze=False,
        sharey="row" if sharey else False, layout="constrained",
    )  # fmt: skip
    return figure, axes


def _server_bound(target: TargetReport) -> list[StepResult]:
    """Steps whose numbers describe the server: not those where the generator fell behind
    (their arrivals were not the process the step asked for)."""
    return [s for s in target.steps if s.verdict != GENERATOR_BOUND]


def _latency(targets: list[TargetReport], slo: float) -> Figure:
    figure, axes = _panels(len(targets), sharey=True)
    values = [
        getattr(s.client, field)
        for t in targets for s in t.steps for field, _ in PERCENTILE_FIELDS
    ]  # fmt: skip
    known = [v for v in values if math.isfinite(v) and v > 0] or [slo]
    low, high = min(known), max(*known, slo)
    for ax, target in zip(axes[0], targets, strict=True):
        by_rate = _by_rate(_server_bound(target))
        rates = sorted(by_rate)
        for field, label in PERCENTILE_FIELDS:
            ax.plot(rates, [_median(by_rate[r], field) for r in rates], marker="o", label=label)
        bound = [s for s in target.steps if s.verdict == GENERATOR_BOUND]
        if bound:
            ax.scatter(
                [s.target_qps for s in bound], [s.client.p99_ms for s in bound],
                marker="x", color="grey", label="p99, generator-bound step",
            )  # fmt: skip
        ax.axhline(slo, color="red", linestyle="--", label=f"SLO: p99 ≤ {slo:g} ms")
        _plain_log_y(ax)
        ax.set_ylim(low / 1.5, high * 2)
        _rate_axis(ax, [s.target_qps for s in target.steps])
        _mark_knee(ax, target)
        ax.grid(True, which="major", alpha=0.3)
        ax.set(title=target.target, xlabel="offered requests/s (median of the steps at each)")
    axes[0][0].set_ylabel("ms from scheduled send (log scale)")
    _shared_legend(figure, list(axes[0]))
    return figure


def _by_rate(steps: list[StepResult]) -> dict[float, list[StepResult]]:
    grouped: dict[float, list[StepResult]] = {}
    for step in steps:
        grouped.setdefault(step.target_qps, []).append(step)
    return grouped


def _median(steps: list[StepResult], field: str) -> float:
    values = [getattr(s.client, field) for s in steps]
    known = [v for v in values if not math.isnan(v)]
    return float(np.median(known)) if known else math.nan


def _shared_legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend for every panel, beside them, where it hides no data."""
    entries: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        entries.update(zip(labels, handles, strict=True))
    figure.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=8)


def _plain_log_y(ax: Axes) -> None:
    """A log y-axis labelled 1, 2, 5, 10, 20, 50 ... as plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))


def _rate_axis(ax: Axes, rates: list[float]) -> None:
    """A log x-axis (rates double from step to step) ticked at the rates tried, leaving
    out those a bisection put between two doublings, where the labels would overlap."""
    ax.set_xscale("log")
    ticks: list[float] = []
    for rate in sorted(set(rates)):
        if not ticks or rate >= ticks[-1] * MIN_TICK_RATIO:
            ticks.append(rate)
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    low, high = min(rates), max(rates)
    ax.set_xlim(low / 1.4, high * 1.4)


def _mark_knee(ax: Axes, target: TargetReport) -> None:
    if target.knee.qps is None:
        ax.text(0.5, 0.1, "no rate held", transform=ax.transAxes, ha="center", color="green")
        return
    label = f"knee {knee_text(target.knee.qps, target.knee.is_lower_bound)}/s"
    ax.axvline(target.knee.qps, color="green", linestyle=":")
    interval = target.interval
    if interval is not None and interval.low_qps and interval.high_qps:
        ax.axvspan(interval.low_qps, interval.high_qps, color="green", alpha=0.12, lw=0)
    # Beside the line, on the side with room: left of it when the knee is the top rate.
    left, right = ax.get_xlim()
    in_right_half = math.log(target.knee.qps / left) > math.log(right / left) / 2
    ax.annotate(
        label, (target.knee.qps, 0.97), xycoords=("data", "axes fraction"), va="top",
        ha="right" if in_right_half else "left", xytext=(-4 if in_right_half else 4, 0),
        textcoords="offset points", color="green", fontweight="bold",
    )  # fmt: skip


def _throughput(targets: list[TargetReport]) -> Figure:
    """One bar per rate offered: the median over the steps at that rate (rounds, retries),
    labelled with how many of them held."""
    figure, axes = _panels(len(targets), rows=2, sharey=True)
    for column, target in enumerate(targets):
        by_rate = _by_rate(target.steps)
        rates = sorted(by_rate)
        x = np.arange(len(rates))
        crowded = len(rates) > CROWDED_STEPS  # the colour then says what held
        labels = [f"{r:,.0f}" if crowded else f"{r:,.0f}\n{_held(by_rate[r])}" for r in rates]
        top, bottom = axes[0][column], axes[1][column]
        delivered = [
            float(np.median([100 * s.client.achieved_qps / s.target_qps for s in by_rate[r]]))
            for r in rates
        ]
        top.bar(x, delivered, color=[_held_colour(by_rate[r]) for r in rates], width=0.5)
        top.axhline(100 * (1 - RATE_TOLERANCE), color="grey", linestyle="--", linewidth=1)
        top.set(title=f"{target.target}: achieved ÷ target", xticks=x, ylim=(0, 110))
        top.set_xlim(-0.6, max(len(rates), 3) - 0.4)
        _step_labels(top, labels)
        top.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
        width = 0.8 / len(PROBLEMS)
        for index, (label, color) in enumerate(PROBLEMS):
            shares = [
                100 * float(np.median([_problem_shares(s)[index] for s in by_rate[r]]))
                for r in rates
            ]
            offset = (index - (len(PROBLEMS) - 1) / 2) * width
            bottom.bar(x + offset, shares, width, color=color, label=label)
        bottom.set(title=f"{target.target}: what went wrong", xticks=x)
        bottom.set_xlim(-0.6, max(len(rates), 3) - 0.4)
        _step_labels(bottom, labels)
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
    axes[0][0].set_ylabel("achieved ÷ target rate (median of its steps)")
    axes[1][0].set_ylabel("share of the step's requests (median)")
    _shared_legend(figure, list(axes[1]))
    return figure


def _held(steps: list[StepResult]) -> str:
    """`holds`, or the verdict, for a rate measured once; `2/5 held` for several."""
    if len(steps) == 1:
        return steps[0].verdict
    return f"{sum(s.holds for s in steps)}/{len(steps)} held"


def _held_colour(steps: list[StepResult]) -> str:
    """Green when every step at the rate held, red when none did, orange in between."""
    held = sum(s.holds for s in steps)
    return "C2" if held == len(steps) else "C3" if held == 0 else "C1"


def _step_labels(ax: Axes, labels: list[str]) -> None:
    """Rate and verdict under each bar; slanted when there are more bars than fit
    "misses-slo" side by side, so that neighbours do not run into each other."""
    if len(labels) <= CROWDED_STEPS:
        ax.set_xticklabels(labels, fontsize=8)
    else:
        ax.set_xticklabels(labels, fontsize=8, rotation=35, ha="right", rotation_mode="anchor")


def _problem_shares(step: StepResult) -> tuple[float, ...]:
    """Slower than the SLO or failed (measured windows), then shed, errors, arrivals
    that waited for a connection (the server's doing), sends late by the generator's own
    doing (late sends less those) and dropped (whole step), as shares of the step's
    requests, in `PROBLEMS` order."""
    counts = step.totals
    requests = max(1, counts.requests)
    arrivals = requests + counts.dropped  # waiting and dropped count arrivals, sent or not
    miss = 0.0 if math.isnan(step.client.miss_ratio) else step.client.miss_ratio
    return (
        miss, counts.shed / requests, counts.errors / requests, counts.blocked / arrivals,
        max(0, counts.late - counts.blocked) / requests, counts.dropped / arrivals,
    )  # fmt: skip


def _queueing(targets: list[TargetReport]) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes[0], targets, strict=True):
        steps = sorted(_server_bound(target), key=lambda s: s.server.utilization)
        rho = [s.server.utilization for s in steps]
        title = target.target
        queue = [s.server.queue_ms for s in steps]
        ax.plot(rho, queue, marker="o", linestyle="none", label="measured, by rate")
        if queue_model_applies(rho):
            predicted = [s.predicted_queue_ms for s in steps]
            ax.plot(rho, predicted, marker="x", label="M/D/c model")
            ax.legend(fontsize=8, loc="best")
        elif steps:
            title += "\n(no model: the runner was hardly busy)"
        else:
            ax.text(0.5, 0.5, "no server-bound step", transform=ax.transAxes, ha="center")
        ax.set(title=title, xlabel="runner utilization (share of time busy)")
        ax.set_xlim(0, max([0.2, *(1.1 * r for r in rho if not math.isnan(r))]))
        # Log scale: waits span microseconds to seconds once the runner saturates (where
        # the model's wait is infinite: scaled to what is finite).
        shown = [y for line in ax.get_lines() for y in line.get_ydata() if 0 < y < math.inf]
        if shown:
            _plain_log_y(ax)
            ax.set_ylim(min(shown) / 2, max(shown) * 3)
        else:
            ax.set_yticks([])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:g}%"))
        _label_apart(ax, steps)
    axes[0][0].set_ylabel("mean wait before the model ran, ms (log scale)")
    return figure


def _label_apart(ax: Axes, steps: list[StepResult]) -> None:
    """Each point's rate beside it, highest rates first, leaving out a label whose point
    sits within `LABEL_GAP` (a share of the panel) of one already labelled: neighbouring
    rates, and one rate measured in several rounds, would print on top of each other."""
    placed: list[tuple[float, float]] = []
    to_axes = ax.transAxes.inverted()
    for step in sorted(steps, key=lambda s: -s.target_qps):
        x, y = step.server.utilization, step.server.queue_ms
        if not (math.isfinite(x) and math.isfinite(y) and y > 0):
            continue
        fx, fy = to_axes.transform(ax.transData.transform((x, y)))
        if any(abs(fx - px) < LABEL_GAP[0] and abs(fy - py) < LABEL_GAP[1] for px, py in placed):
            continue
        placed.append((fx, fy))
        ax.annotate(f"{step.target_qps:,.0f}/s", (x, y), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)  # fmt: skip


def _stress(targets: list[TargetReport], slo: float) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes[0], targets, strict=True):
        assert target.stress is not None
        clock = 0.0
        for step in [*target.stress.steps, *filter(None, [target.stress.recovery])]:
            times = [clock + (i + 1) * step.window_s for i in range(len(step.window_p99_ms))]
            ax.plot(times, step.window_p99_ms, marker=".", label=f"{step.target_qps:,.0f}/s")
            clock += step.duration_s
        ax.axhline(slo, color="red", linestyle="--", label="SLO")
        _plain_log_y(ax)
        ax.set(title=f"{target.target}: overload, then recovery", xlabel="s", ylabel="p99, ms")
        ax.legend(fontsize=7)
    return figure


def _soak(targets: list[TargetReport]) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes[0], targets, strict=True):
        assert target.soak is not None
        rss = target.soak.step.rss_mb
        ax.plot([t for t, _ in rss], [mb for _, mb in rss])
        ax.set(title=f"{target.target}: soak", xlabel="s", ylabel="server RSS, MiB")
    return figure

"""The sweep's plots, as PNG files: what a reader looks at before any table.

- latency.png: client percentiles (from scheduled time) against achieved QPS, one panel
  per target, the SLO as a line and the knee marked; generator-bound steps only as
  grey crosses, since they measure the generator;
- queueing.png: measured batch-queue delay and the model's prediction against runner
  utilization (generator-bound steps left out: their arrivals came in bursts);
- throughput.png: achieved against target QPS, with generator-bound steps marked;
- stress.png / soak.png when those ran: p99 per window through overload and recovery,
  and the server's resident memory over the soak.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtests.sweep.knee import GENERATOR_BOUND
from loadtests.sweep.results import StepResult
from loadtests.sweep.runner import SweepReport, TargetReport

PERCENTILE_FIELDS = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))


def write_plots(report: SweepReport, out: Path) -> list[Path]:
    """Every plot that has data, written into `out`; returns their paths."""
    slo = report.plan.steps.slo_p99_ms
    swept = [t for t in report.targets if t.steps]
    paths = []
    if swept:
        paths.append(_save(_latency(swept, slo), out / "latency.png"))
        paths.append(_save(_queueing(swept), out / "queueing.png"))
        paths.append(_save(_throughput(swept), out / "throughput.png"))
    stressed = [t for t in report.targets if t.stress is not None]
    if stressed:
        paths.append(_save(_stress(stressed, slo), out / "stress.png"))
    soaked = [t for t in report.targets if t.soak is not None]
    if soaked:
        paths.append(_save(_soak(soaked), out / "soak.png"))
    return paths


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    figure, axes = plt.subplots(1, count, figsize=(5.5 * count, 4.2), squeeze=False)
    return figure, list(axes[0])


def _server_bound(target: TargetReport) -> list[StepResult]:
    """Steps whose numbers describe the server: not those where the generator fell behind
    (their arrivals were not the process the step asked for)."""
    return [s for s in target.steps if s.verdict != GENERATOR_BOUND]


def _latency(targets: list[TargetReport], slo: float) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        steps = sorted(_server_bound(target), key=lambda s: s.client.achieved_qps)
        qps = [s.client.achieved_qps for s in steps]
        for field, label in PERCENTILE_FIELDS:
            ax.plot(qps, [getattr(s.client, field) for s in steps], marker="o", label=label)
        bound = [s for s in target.steps if s.verdict == GENERATOR_BOUND]
        if bound:
            ax.scatter(
                [s.client.achieved_qps for s in bound], [s.client.p99_ms for s in bound],
                marker="x", color="grey", label="p99, generator-bound step",
            )  # fmt: skip
        ax.axhline(slo, color="red", linestyle="--", label=f"SLO p99 {slo:g} ms")
        if target.knee.qps:
            ax.axvline(target.knee.qps, color="green", linestyle=":", label="knee")
        ax.set_yscale("log")
        ax.set(title=target.target, xlabel="achieved QPS", ylabel="latency from schedule, ms")
        ax.legend(fontsize=8)
    return figure


def _queueing(targets: list[TargetReport]) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        steps = sorted(_server_bound(target), key=lambda s: s.server.utilization)
        rho = [s.server.utilization for s in steps]
        ax.plot(rho, [s.server.queue_ms for s in steps], marker="o", label="measured")
        ax.plot(rho, [s.predicted_queue_ms for s in steps], marker="x", label="M/D/c predicted")
        ax.set(title=target.target, xlabel="runner utilization", ylabel="queue delay, ms")
        ax.legend(fontsize=8)
    return figure


def _throughput(targets: list[TargetReport]) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        steps = sorted(target.steps, key=lambda s: s.target_qps)
        offered = [s.target_qps for s in steps]
        ax.plot(offered, offered, color="grey", linestyle="--", label="achieved = target")
        ax.plot(offered, [s.client.achieved_qps for s in steps], marker="o", label="achieved")
        bound = [s for s in steps if s.verdict == GENERATOR_BOUND]
        if bound:
            ax.scatter(
                [s.target_qps for s in bound],
                [s.client.achieved_qps for s in bound],
                color="red", zorder=3, label="generator-bound",
            )  # fmt: skip
        ax.set(title=target.target, xlabel="target QPS", ylabel="achieved QPS")
        ax.legend(fontsize=8)
    return figure


def _stress(targets: list[TargetReport], slo: float) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        assert target.stress is not None
        clock = 0.0
        for step in [*target.stress.steps, *filter(None, [target.stress.recovery])]:
            times = [clock + (i + 1) * step.window_s for i in range(len(step.window_p99_ms))]
            ax.plot(times, step.window_p99_ms, marker=".", label=f"{step.target_qps:,.0f}/s")
            clock += step.duration_s
        ax.axhline(slo, color="red", linestyle="--", label="SLO")
        ax.set_yscale("log")
        ax.set(title=f"{target.target}: overload, then recovery", xlabel="s", ylabel="p99, ms")
        ax.legend(fontsize=7)
    return figure


def _soak(targets: list[TargetReport]) -> Figure:
    figure, axes = _panels(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        assert target.soak is not None
        rss = target.soak.step.rss_mb
        ax.plot([t for t, _ in rss], [mb for _, mb in rss])
        ax.set(title=f"{target.target}: soak", xlabel="s", ylabel="server RSS, MiB")
    return figure

"""One profile: open-loop load on one core, the server on another, py-spy reading it.

The load is the sweep's own step (loadtests/sweep/steps.py) with the native engine, so
its figures are those a sweep reports: achieved rate, p50 and p99 from the schedule, and
the server's batch size and queue wait from /metrics read before and after. After a
warm-up step (discarded), `repeats` pairs of steps run, each the same step first without
the profiler and then with it: the first of each pair measures what the profiler costs
(side by side), the second is profiled, and the spread of the profiled repeats is the
run-to-run noise a comparison between two profiles is judged against.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bodies import encode_bodies, holdout_rows
from loadtests.engines.native import NativeEngine
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.sweep.results import StepResult
from loadtests.sweep.steps import StepRunner, StepSettings
from perfserve.benchmarks.profile.spy import Sampler
from perfserve.benchmarks.profile.table import StageTable, Window, stage_table
from perfserve.benchmarks.profile.target import Target, cpu_seconds, thread_cpu_seconds

WARMUP_S = 2.0
MAX_IN_FLIGHT = 256
WINDOW_S = 0.5


@dataclass(frozen=True)
class ProfileSettings:
    variant: str
    rate: float
    seconds: float
    """Profiled time in all; as long again runs without the profiler."""
    repeats: int = 4
    sample_rate: int = 1000
    native: bool = False
    generator_cpu: int | None = None


@dataclass
class StepFigures:
    """What the load saw in one step, and the server's CPU per request from /proc."""

    achieved_qps: float
    p50_ms: float
    p99_ms: float
    batch_size: float
    queue_ms: float
    requests: float
    cpu_us_per_request: float

    @classmethod
    def of(cls, step: StepResult, cpu_s: float) -> StepFigures:
        requests = step.server.requests
        return cls(
            achieved_qps=step.client.achieved_qps,
            p50_ms=step.client.p50_ms,
            p99_ms=step.client.p99_ms,
            batch_size=step.server.mean_batch_rows,
            queue_ms=step.server.queue_ms,
            requests=requests,
            cpu_us_per_request=1e6 * cpu_s / requests if requests else float("nan"),
        )


@dataclass
class ProfileRun:
    settings: ProfileSettings
    windows: list[Window] = field(default_factory=list)
    profiled: list[StepFigures] = field(default_factory=list)
    plain: list[StepFigures] = field(default_factory=list)

    def table(self) -> StageTable:
        return stage_table(self.windows)

    def repeat_tables(self) -> list[StageTable]:
        return [stage_table([window]) for window in self.windows]


def profile(
    target: Target, store: Path, settings: ProfileSettings, progress: Callable[[str], None]
) -> ProfileRun:
    """Warm up, then the pairs of steps; every step bounded by its length (and the sweep's
    drain timeout). The bodies are rows of the store's hold-out set."""
    step_s = settings.seconds / settings.repeats
    steps = StepSettings(step_seconds=step_s, window_seconds=min(WINDOW_S, step_s / 4))
    cpus = [settings.generator_cpu] if settings.generator_cpu is not None else None
    engine = NativeEngine(target.url, 1, MAX_IN_FLIGHT, LoadgenMetrics(), cpus)
    run = ProfileRun(settings)
    try:
        engine.setup(encode_bodies(holdout_rows(store), 1), 1, settings.variant)
        variants = [settings.variant]
        runner = StepRunner(engine, target.url, settings.variant, variants, steps, lambda _: None)
        progress(f"warming up at {settings.rate:,.0f}/s for {WARMUP_S:g} s")
        runner.run(settings.rate, seconds=WARMUP_S, extend=False)
        for repeat in range(settings.repeats):
            before = cpu_seconds(target.pid)
            step = runner.run(settings.rate, seconds=step_s, extend=False)
            run.plain.append(StepFigures.of(step, cpu_seconds(target.pid) - before))
            sampler = Sampler(target.pid, settings.sample_rate, settings.native)
            sampler.start()
            before, threads_before = cpu_seconds(target.pid), thread_cpu_seconds(target.pid)
            step = runner.run(settings.rate, seconds=step_s, extend=False)
            cpu_s = cpu_seconds(target.pid) - before
            threads = {
                tid: cpu - threads_before.get(tid, 0.0)
                for tid, cpu in thread_cpu_seconds(target.pid).items()
            }
            recording = sampler.stop()
            figures = StepFigures.of(step, cpu_s)
            run.profiled.append(figures)
            window = Window(recording.stacks, recording.rate, cpu_s, threads, figures.requests,
                            recording.lagged)  # fmt: skip
            run.windows.append(window)
            table = stage_table([window])
            progress(
                f"  repeat {repeat + 1}/{settings.repeats}: {figures.achieved_qps:,.0f}/s, "
                f"p99 {figures.p99_ms:.2f} ms, {table.measured_us:.1f} µs/request measured, "
                f"{table.coverage:.0%} attributed"
                + (" (py-spy fell behind its rate)" if recording.lagged else "")
            )
    finally:
        engine.close()
    return run


def overhead(run: ProfileRun) -> dict[str, Any]:
    """Medians over the repeats of the steps without and with the profiler."""
    keys = ("achieved_qps", "p50_ms", "p99_ms", "cpu_us_per_request")
    result: dict[str, Any] = {}
    for key in keys:
        plain = statistics.median(getattr(f, key) for f in run.plain)
        profiled = statistics.median(getattr(f, key) for f in run.profiled)
        result[key] = {
            "without": plain,
            "with": profiled,
            "ratio": profiled / plain if plain else None,
        }
    return result

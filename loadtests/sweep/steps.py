"""One step of a sweep: offer a rate, watch the windows, stop when the numbers settle.

Before the first arrival the generator opens its connections (`Engine.warm`), so the
server does not accept them in the middle of the measurement. The step then runs
`warmup_seconds` at its rate (the server's queue and batches finding their level) before
its measured windows: at least `step_seconds` of them, then a window at a time until
throughput and p99 have settled and it has enough answers for its p99, or until
`max_step_seconds`. The warm-up is left out of the percentiles and reported apart
(`StepResult.warmup`); the counts keep every request, so they can be reconciled with the
server's. Arrivals then stop, every request in flight is waited
for, and `/metrics` is read again: the difference is the server's side of the step.

A step is measured (`StepRunner.measure`, a `StepMeasurement`), then judged
(loadtests/sweep/judge.py), then its result is built once with its verdict and its line
printed (`step_line`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from loadtests.arrivals import ArrivalProcess
from loadtests.recorder import Window
from loadtests.sweep.acceptance import STABLE_WINDOWS, min_samples, miss_certain, stable
from loadtests.sweep.judge import judge
from loadtests.sweep.results import (
    StepMeasurement,
    StepResult,
    client_side,
    misses,
    own_late_share,
    step_result,
    totals,
    window_points,
)
from loadtests.sweep.server_metrics import GaugeSampler, scrape, server_split
from perfserve_common.core_speed import core_speed
from perfserve_common.slo import SLO_P99_MS

if TYPE_CHECKING:
    from loadtests.engines.base import Engine

GRACE_S = 0.5
"""A window is judged this long after it ends, once most of its answers are in."""
P99_SAMPLES = min_samples(99.0)
MAX_WAIT_FOR_ANSWERS_S = 120.0


@dataclass(frozen=True)
class StepSettings:
    slo_p99_ms: float = SLO_P99_MS
    step_seconds: float = 20.0
    window_seconds: float = 5.0
    max_step_seconds: float = 60.0
    """Longest a step's measured windows may run (the warm-up comes on top)."""
    warmup_seconds: float | None = None
    """Time at the step's rate before its measured windows; None: one window."""
    arrivals: ArrivalProcess = "poisson"
    drain_timeout_s: float = 35.0


@dataclass(frozen=True)
class RunContext:
    """What a run measured before its first step that its steps use: found out while the
    run starts, so kept beside the plan and its settings, which stay as they were made."""

    server_cpu: int | None = None
    """A CPU the server runs on, read with `core_speed` before each step that starts
    idle; None when the server is not on this machine."""
    generator_ceiling_qps: float | None = None
    """The generator's calibrated ceiling (`--calibrate`); None when not measured."""


class StepRunner:
    """Runs the steps of one target (a variant, or the live split) on one driver."""

    def __init__(
        self,
        driver: Engine,
        url: str,
        target: str,
        variants: list[str] | None,
        settings: StepSettings,
        progress: Callable[[str], None],
        context: RunContext | None = None,
    ) -> None:
        self.driver = driver
        self.url = url
        self.target = target
        self.variants = variants
        self.settings = settings
        self.progress = progress
        self.context = context or RunContext()
        self._idle = True
        """Whether the last step drained: the server and generator are idle until the next."""

    def run(
        self,
        rate: float,
        phase: str = "sweep",
        *,
        round_number: int = 1,
        seconds: float | None = None,
        window_s: float | None = None,
        extend: bool = True,
        drain: bool = True,
        warmup: bool = True,
    ) -> StepResult:
        """One step at `rate`, measured, judged and reported; `round_number` is the round of
        the knee search it belongs to (loadtests/sweep/rounds.py; steps after the rounds,
        stress and soak, count as the first). `warmup=False` opens no connections ahead and
        measures from the first window (to watch a transition, such as recovery, from its
        very start)."""
        measured = self.measure(
            rate, phase, seconds=seconds, window_s=window_s, extend=extend, drain=drain,
            warmup=warmup,
        )  # fmt: skip
        s = self.settings
        verdict = judge(measured, s.slo_p99_ms, self.context.generator_ceiling_qps)
        result = step_result(self.target, measured, verdict, s.arrivals, round_number)
        self.progress(step_line(result))
        return result

    def measure(
        self,
        rate: float,
        phase: str = "sweep",
        *,
        seconds: float | None = None,
        window_s: float | None = None,
        extend: bool = True,
        drain: bool = True,
        warmup: bool = True,
    ) -> StepMeasurement:
        """One step at `rate`, offered and watched until it settles (see `run`)."""
        s = self.settings
        window_s = window_s or s.window_seconds
        first = warmup_windows(s.warmup_seconds, window_s) if warmup else 0
        n_min, n_max = self._window_counts(rate, window_s, first, seconds, extend)
        step = self.driver.new_step()
        core_rate = None
        if self._idle and self.context.server_cpu is not None:
            core_rate = core_speed(self.context.server_cpu)
        before = scrape(self.url)
        sampler = GaugeSampler(self.url).start()
        try:  # a step that fails (the server gone) must not leave the sampler polling
            cpu_before = _cpu_seconds(self.driver.processes())
            if warmup:
                self.driver.warm()
            start = self.driver.start_step(step, rate, s.arrivals, window_s)
            windows = self._until_settled(
                step, rate, phase, start=start, window_s=window_s, first=first,
                n_min=n_min, n_max=n_max,
            )  # fmt: skip
            stopped = time.time()
            self.driver.stop_arrivals(step)
            if drain:
                self.driver.drain(s.drain_timeout_s)
            else:
                self.driver.flush()
            self._idle = drain
            after = scrape(self.url)
        finally:
            sampler.stop()
        active_s = stopped - start
        cpu = _cpu_seconds(self.driver.processes())
        measured = self._windows(step, range(first, windows))
        warm = self._windows(step, range(first))
        points = window_points(measured, window_s, s.slo_p99_ms)
        measurement = StepMeasurement(
            step=step,
            phase=phase,
            rate=rate,
            duration_s=active_s,
            window_s=window_s,
            client=client_side(measured, window_s, s.slo_p99_ms),
            points=points,
            totals=totals(self._every_window(step)),
            server=server_split(before, after, active_s, self.variants, sampler.in_flight),
            generator_cpu=max((cpu.get(p, 0.0) - cpu_before.get(p, 0.0)) / active_s for p in cpu),
            late_share=own_late_share(measured),
            dropped=sum(w.dropped for w in measured),
            blocked=sum(w.blocked for w in measured),
            settled=stable(points, s.slo_p99_ms, window_s),
            enough_answers=result_answers(measured) >= P99_SAMPLES,
            rss_mb=[(t, rss / 2**20) for t, rss in sampler.rss],
            core_rate=core_rate,
            warmup_s=first * window_s,
            warmup=client_side(warm, window_s, s.slo_p99_ms) if warm else None,
        )
        self.driver.collected.discard(step)
        return measurement

    def _window_counts(
        self, rate: float, window_s: float, first: int, seconds: float | None, extend: bool
    ) -> tuple[int, int]:
        """The fewest and the most windows the step runs, warm-up included: extended for
        stability up to max_step_seconds, and for answers as long as the rate needs to
        give a p99 its 459 (bounded: a very low rate cannot have them)."""
        s = self.settings
        measured_min = max(STABLE_WINDOWS, math.ceil((seconds or s.step_seconds) / window_s))
        n_min = first + measured_min
        for_answers = math.ceil(P99_SAMPLES / (rate * window_s)) + 2
        longest = max(s.max_step_seconds, min(for_answers * window_s, MAX_WAIT_FOR_ANSWERS_S))
        n_max = first + max(measured_min, math.ceil(longest / window_s)) if extend else n_min
        return n_min, n_max

    def _until_settled(
        self,
        step: int,
        rate: float,
        phase: str,
        *,
        start: float,
        window_s: float,
        first: int,
        n_min: int,
        n_max: int,
    ) -> int:
        """Wait out windows from `n_min` on, one at a time, until the measured ones have
        settled with enough answers for a p99, or `n_max` of them have passed, or the step
        has missed the SLO whatever comes next (`miss_certain`); reports progress after
        each; returns how many windows the step lasted."""
        s = self.settings
        # Windows are brought in as they close, not all at `n_min`: a native generator's
        # sends wait while it packs the windows a flush carries, so each carries few.
        for closed in range(1, n_min):
            _sleep_until(start + closed * window_s + GRACE_S)
            self.driver.flush()
        windows = n_min
        while True:
            _sleep_until(start + windows * window_s + GRACE_S)
            self.driver.flush()
            measured = self._windows(step, range(first, windows))
            points = window_points(measured, window_s, s.slo_p99_ms)
            settled = stable(points, s.slo_p99_ms, window_s)
            answers = result_answers(measured)
            self.progress(
                f"  {self.target} {phase} {rate:,.0f}/s  {windows * window_s:4.0f}s  "
                f"step so far: p99 {_p99_text(points[-1].p99_so_far_ms)}"
                f"  (last window: achieved {points[-1].throughput:,.0f}/s  "
                f"p99 {_p99_text(points[-1].p99_ms)})  "
                f"answers {answers}  {'settled' if settled else 'settling'}"
            )
            if (settled and answers >= P99_SAMPLES) or windows >= n_max:
                return windows
            missed_so_far = sum(misses(w.merged_tally(), s.slo_p99_ms) for w in measured)
            if miss_certain(missed_so_far, rate, (n_max - first) * window_s):
                self.progress(
                    f"  {self.target} {phase} {rate:,.0f}/s  stopped early: more than 1% of "
                    "its longest length has already missed the SLO"
                )
                return windows
            windows += 1

    def _every_window(self, step: int) -> list[Window]:
        """Warm-up and tail included: every request of the step, to match the server's."""
        collected = self.driver.collected
        return [window for (s, _), window in collected.windows.items() if s == step]

    def _windows(self, step: int, indices: range) -> list[Window]:
        collected = self.driver.collected
        return [collected.window((step, i)) for i in indices]


def warmup_windows(warmup_seconds: float | None, window_s: float) -> int:
    """Whole windows of warm-up: one when not given, none when asked for none."""
    if warmup_seconds is None:
        return 1
    return math.ceil(warmup_seconds / window_s - 1e-9)


def result_answers(windows: list[Window]) -> int:
    return sum(w.merged_tally().scheduled.get_total_count() for w in windows)


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def _p99_text(p99_ms: float) -> str:
    """A window's p99 for the progress line. Latencies are filed under their scheduled
    time, so the newest window has none while every answer takes longer than a window."""
    return "pending (no answer yet)" if math.isnan(p99_ms) else f"{p99_ms:.2f} ms"


def step_line(result: StepResult) -> str:
    """The line a finished step is reported by: its verdict and the whole step's figures."""
    return (
        f"  {result.target} {result.phase} {result.target_qps:,.0f}/s  -> {result.verdict}  "
        f"(whole step: achieved {result.client.achieved_qps:,.0f}/s  "
        f"p99 {_p99_text(result.client.p99_ms)}  over {result.windows} windows)"
    )


def _sleep_until(wall_time: float) -> None:
    time.sleep(max(0.0, wall_time - time.time()))

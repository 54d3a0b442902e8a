"""The per-stage table: server CPU in µs per request, its size from /proc, its split from
the samples.

/proc says how much CPU each of the server's threads used in the window (utime + stime
of every thread; together, the process's); the samples say where each thread spent it.
Each thread's CPU is split over the stages in proportion to that thread's samples, so
the table adds up to the CPU measured from /proc, and what it cannot attribute is
`other`: samples in frames no rule names, and the CPU of threads the sampler never saw
running (native threads, threads that came and went between samples).

Why not the samples alone (samples ÷ sampling rate)? On a shared machine a thread
waiting for its core looks as busy to the sampler as one running, and every stop the
sampler makes costs the server kernel time it never samples; both move the samples'
total away from the CPU used (by ±20% on a loaded 2-core machine). Preemption strikes
in proportion to the time spent in each frame, so the proportions hold. The samples'
own total is still reported beside the measured CPU (`sampled_us`), as a check.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from perfserve.benchmarks.profile.stacks import Stacks, without_thread_id
from perfserve.benchmarks.profile.stages import IDLE, STAGE_MEANINGS, STAGES, stage_of

COVERAGE_TOLERANCE = 0.10
"""The stages must sum to within this share of the CPU measured from /proc."""
THREAD_FRAME = re.compile(r"thread \((\d+)\)")


@dataclass(frozen=True)
class Window:
    """One profiled window: its samples, each thread's CPU and the requests answered."""

    stacks: Stacks
    rate: int
    cpu_s: float
    """The process's CPU seconds in the window (utime + stime from /proc/PID/stat)."""
    thread_cpu_s: dict[int, float]
    """CPU seconds of each of its threads (/proc/PID/task), by native thread id."""
    requests: float
    lagged: bool = False


@dataclass(frozen=True)
class StageTable:
    us_per_request: dict[str, float]
    measured_us: float
    """Server CPU per request from /proc."""
    attributed_us: float
    """The stages' sum (`other` included)."""
    sampled_us: float
    """The samples alone: samples ÷ rate per request (a check, see the module's text)."""
    unseen_threads_us: float
    """CPU of threads that left no running sample (counted in `other`)."""
    idle_samples: int
    samples: int
    requests: float

    @property
    def coverage(self) -> float:
        return self.attributed_us / self.measured_us if self.measured_us else float("nan")

    @property
    def adds_up(self) -> bool:
        return abs(self.coverage - 1.0) <= COVERAGE_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        shares = {
            stage: us / self.measured_us if self.measured_us else None
            for stage, us in self.us_per_request.items()
        }
        return {
            **asdict(self),
            "share_of_measured": shares,
            "coverage": self.coverage,
            "adds_up": self.adds_up,
            "sampled_share_of_measured": self.sampled_us / self.measured_us
            if self.measured_us
            else None,
        }


def thread_of(stack: tuple[str, ...]) -> int | None:
    """The native thread id py-spy writes as the first frame (`thread (TID): name`)."""
    match = THREAD_FRAME.match(stack[0]) if stack else None
    return int(match.group(1)) if match else None


def _thread_stages(stacks: Stacks) -> dict[int | None, Counter[str]]:
    """Sample counts by thread and stage (threads asleep under IDLE)."""
    by_thread: dict[int | None, Counter[str]] = defaultdict(Counter)
    for stack, count in stacks.items():
        by_thread[thread_of(stack)][stage_of(list(stack))] += count
    return by_thread


def _window_seconds(window: Window) -> tuple[dict[str, float], float, int, int]:
    """Stage CPU seconds of one window, the unseen threads' seconds, and its running and
    idle samples."""
    seconds: dict[str, float] = defaultdict(float)
    unseen = 0.0
    running = idle = 0
    by_thread = _thread_stages(window.stacks)
    for counts in by_thread.values():
        idle += counts.pop(IDLE, 0)
        running += sum(counts.values())
    for tid, cpu_s in window.thread_cpu_s.items():
        counts = by_thread.get(tid, Counter())
        total = sum(counts.values())
        if total == 0:
            unseen += cpu_s
            continue
        for stage, count in counts.items():
            seconds[stage] += cpu_s * count / total
    seconds["other"] += unseen
    return seconds, unseen, running, idle


def stage_table(windows: list[Window]) -> StageTable:
    """The table of one or more windows taken together."""
    seconds: dict[str, float] = defaultdict(float)
    unseen = sampled_s = 0.0
    running = idle = 0
    for window in windows:
        window_seconds, window_unseen, window_running, window_idle = _window_seconds(window)
        for stage, stage_s in window_seconds.items():
            seconds[stage] += stage_s
        unseen += window_unseen
        running += window_running
        idle += window_idle
        sampled_s += window_running / window.rate
    requests = sum(w.requests for w in windows)
    per_request = 1e6 / requests if requests else float("nan")
    us = {stage: seconds[stage] * per_request for stage in STAGES}
    return StageTable(
        us_per_request=us,
        measured_us=sum(w.cpu_s for w in windows) * per_request,
        attributed_us=sum(us.values()),
        sampled_us=sampled_s * per_request,
        unseen_threads_us=unseen * per_request,
        idle_samples=idle,
        samples=running,
        requests=requests,
    )


UNSEEN = ("threads never sampled running (native threads, the sampler's own stops)",)


def stack_weights(windows: list[Window]) -> dict[tuple[str, ...], float]:
    """Each stack's cost in µs per request over the windows, its thread's CPU split as
    in the table (threads asleep left out), thread ids dropped, and the CPU of threads
    never sampled running as one stack of its own: what the flame graphs draw."""
    requests = sum(w.requests for w in windows)
    weights: dict[tuple[str, ...], float] = defaultdict(float)
    for window in windows:
        running: Counter[int | None] = Counter()
        for stack, count in window.stacks.items():
            if stage_of(list(stack)) != IDLE:
                running[thread_of(stack)] += count
        for stack, count in window.stacks.items():
            tid = thread_of(stack)
            if stage_of(list(stack)) == IDLE or tid not in window.thread_cpu_s:
                continue
            share = window.thread_cpu_s[tid] * count / running[tid]
            weights[without_thread_id(stack)] += share * 1e6 / requests
        for tid, cpu_s in window.thread_cpu_s.items():
            if not running[tid]:
                weights[UNSEEN] += cpu_s * 1e6 / requests
    return dict(weights)


def markdown(table: StageTable, spread: dict[str, float] | None = None) -> str:
    """The table as Markdown (printed on the console as it is)."""
    extra = " ± (repeats) |" if spread else ""
    lines = ["| stage | µs/request | share of measured |" + extra,
             "| --- | ---: | ---: |" + (" ---: |" if spread else "")]  # fmt: skip
    for stage in STAGES:
        us = table.us_per_request[stage]
        share = us / table.measured_us if table.measured_us else float("nan")
        cells = f"| {stage} | {us:.1f} | {share:.1%} |"
        if spread:
            cells += f" {spread.get(stage, 0.0):.1f} |"
        lines.append(cells)
    blank = " |" if spread else ""
    lines.append(
        f"| **sum of stages** | **{table.attributed_us:.1f}** | **{table.coverage:.1%}** |{blank}"
    )
    lines.append(f"| measured (/proc) | {table.measured_us:.1f} | 100% |{blank}")
    verdict = "within" if table.adds_up else "NOT within"
    sampled = table.sampled_us / table.measured_us if table.measured_us else float("nan")
    lines += [
        "",
        f"The stages sum to {table.coverage:.1%} of the CPU measured from /proc ({verdict} "
        f"±{COVERAGE_TOLERANCE:.0%}); `other` holds {table.unseen_threads_us:.1f} µs of "
        f"threads no sample saw running. {table.samples:,} samples over "
        f"{table.requests:,.0f} requests ({table.idle_samples:,} of threads asleep left "
        f"out); the samples alone (÷ rate) come to {sampled:.0%} of the measured CPU.",
    ]
    return "\n".join(lines)


def stage_legend() -> str:
    return "\n".join(f"- `{stage}`: {STAGE_MEANINGS[stage]}" for stage in STAGES)

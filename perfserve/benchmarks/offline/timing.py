"""Interleaved timing: every run times each variant in turn, so drift hits all of them alike.

A run is one block of calls per variant and batch size. Within a run the variant order
rotates (A B C, then B C A, ...), so no variant always follows the same neighbour or
always comes first after a batch-size change.

By default a block holds as many calls as fill `min_block_seconds` (judged from the
warm-up calls): a block of a few 50 µs calls is over before the scheduler's next tick,
so one preemption would swing its mean by tens of percent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from perfserve.benchmarks.offline.resources import EnergyMeter, process_cpu_seconds
from service.runtimes import Runner


@dataclass
class Timings:
    """Every timed call of one variant at one batch size, and what those calls consumed."""

    variant: str
    batch_size: int
    calls: np.ndarray
    """Seconds per call, shape (runs, calls_per_run)."""
    cpu_seconds: float = 0.0
    energy_joules: float | None = None
    """Measured energy (RAPL) over this cell's calls; None without counters."""

    @property
    def run_means(self) -> np.ndarray:
        """One mean per run: the paired, close-to-independent samples the statistics use."""
        means: np.ndarray = self.calls.mean(axis=1)
        return means

    @property
    def samples(self) -> int:
        """Rows predicted in all timed calls."""
        return int(self.calls.size) * self.batch_size


@dataclass(frozen=True)
class TimingPlan:
    runs: int
    calls_per_run: int | None
    """Fixed calls per block, or None to fill `min_block_seconds`."""
    warmup_calls: int
    batch_sizes: list[int] = field(default_factory=list)
    min_block_seconds: float = 0.01

    def calls_for(self, warmup_seconds: list[float]) -> int:
        """Calls per block for a cell whose warm-up calls took `warmup_seconds`."""
        if self.calls_per_run is not None:
            return self.calls_per_run
        typical = float(np.median(warmup_seconds[1:] or warmup_seconds))
        return int(np.clip(np.ceil(self.min_block_seconds / max(typical, 1e-7)), 5, 10_000))


Progress = Callable[[int, int], None]
"""Called as progress(done_runs, total_runs) after every run."""


def time_interleaved(
    runners: dict[str, Runner],
    batches: dict[int, np.ndarray],
    plan: TimingPlan,
    progress: Progress | None = None,
    meter: EnergyMeter | None = None,
) -> dict[tuple[str, int], Timings]:
    """Warm every variant up (timed only to size the blocks, never reported), then time
    `plan.runs` interleaved runs."""
    names = list(runners)
    cells = {}
    for name in names:
        for size in plan.batch_sizes:
            warmup = [_timed(runners[name], batches[size]) for _ in range(plan.warmup_calls)]
            calls = plan.calls_for(warmup)
            cells[name, size] = Timings(name, size, np.empty((plan.runs, calls)))
    energy = meter if meter is not None and meter.available else None
    for run in range(plan.runs):
        for size in plan.batch_sizes:
            shift = run % len(names)
            for name in names[shift:] + names[:shift]:
                _time_block(runners[name], batches[size], cells[name, size], run, energy)
        if progress is not None:
            progress(run + 1, plan.runs)
    return cells


def _time_block(
    runner: Runner, batch: np.ndarray, cell: Timings, run: int, meter: EnergyMeter | None
) -> None:
    row = cell.calls[run]
    energy_before = meter.read() if meter is not None else None
    cpu_before = process_cpu_seconds()
    for call in range(row.size):
        row[call] = _timed(runner, batch)
    cell.cpu_seconds += process_cpu_seconds() - cpu_before
    if meter is not None and energy_before is not None:
        spent = meter.joules_between(energy_before, meter.read())
        cell.energy_joules = (cell.energy_joules or 0.0) + spent


def _timed(runner: Runner, batch: np.ndarray) -> float:
    started = time.perf_counter()
    runner.predict(batch)
    return time.perf_counter() - started

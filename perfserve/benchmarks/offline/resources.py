"""Resources a variant costs: memory to load, peak memory per call, CPU time and energy.

Load figures come from a fresh process per variant, so the memory a variant takes and its
cold start are not hidden by libraries and arenas another variant already paid for.
"""

from __future__ import annotations

import multiprocessing
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import threadpoolctl

from service.quality import Task
from service.runtimes import open_runner

RAPL_ROOT = Path("/sys/class/powercap")
# The energy proxy when no RAPL counter is readable: a busy server core draws roughly this.
PROXY_WATTS_PER_CORE = 10.0


@dataclass(frozen=True)
class LoadFigures:
    """What loading one variant costs, measured in a process of its own."""

    load_seconds: float
    load_memory_bytes: int
    """Resident memory the load added (model weights, runtime session, arenas)."""
    cold_call_seconds: dict[int, float]
    """First call at each batch size after the load: allocations and lazy set-up included."""
    peak_inference_bytes: dict[int, int]
    """Memory one warm call needs above what is resident before it."""


def current_rss() -> int:
    """Resident set size of this process, in bytes."""
    return _status_kib("VmRSS") * 1024


def peak_bytes_during(call: Callable[[], object]) -> int:
    """Memory one call needs: the larger of its resident high-water mark above the RSS before
    it (native allocations, e.g. onnxruntime) and its traced Python/numpy peak, which counts
    buffers the allocator serves from memory already resident."""
    _reset_peak_rss()
    before = current_rss()
    tracemalloc.start()
    try:
        call()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    resident_peak = _status_kib("VmHWM") * 1024 - before
    return max(resident_peak, traced_peak, 0)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0); if that is refused, the peak
    # still bounds the call from above and tracemalloc covers the Python side.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return


def measure_load(
    path: Path,
    model_format: str,
    task: Task,
    threads: int,
    rows: np.ndarray,
    batch_sizes: list[int],
) -> LoadFigures:
    """Load a variant in a fresh process and report its load and cold-start figures."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        figures: LoadFigures = pool.apply(
            _probe_load, (path, model_format, task, threads, rows, batch_sizes)
        )
    return figures


def _probe_load(
    path: Path,
    model_format: str,
    task: Task,
    threads: int,
    rows: np.ndarray,
    batch_sizes: list[int],
) -> LoadFigures:
    threadpoolctl.threadpool_limits(threads)
    before = current_rss()
    started = time.perf_counter()
    runner = open_runner(path, model_format, task, threads)
    load_seconds = time.perf_counter() - started
    load_memory = max(0, current_rss() - before)
    cold: dict[int, float] = {}
    peak: dict[int, int] = {}
    for size in batch_sizes:
        batch = batch_of(rows, size)
        started = time.perf_counter()
        runner.predict(batch)
        cold[size] = time.perf_counter() - started
        peak[size] = peak_bytes_during(partial(runner.predict, batch))
    return LoadFigures(load_seconds, load_memory, cold, peak)


def batch_of(rows: np.ndarray, size: int) -> np.ndarray:
    """`size` hold-out rows, repeating the hold-out when the batch is larger than it."""
    return np.ascontiguousarray(np.resize(rows, (size, rows.shape[1])), dtype=np.float32)


class EnergyMeter:
    """Cumulative package energy from RAPL counters, when the machine exposes them readable."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.zones = _package_zones(root)

    @property
    def available(self) -> bool:
        return bool(self.zones)

    @property
    def source(self) -> str:
        if self.available:
            return f"RAPL ({len(self.zones)} package counter(s), whole package incl. other load)"
        return (
            f"CPU-time proxy: no readable RAPL counter; estimate = CPU seconds x "
            f"{PROXY_WATTS_PER_CORE:g} W per busy core"
        )

    def read(self) -> list[int]:
        """Raw counter values in microjoules, one per package."""
        return [int((zone / "energy_uj").read_text()) for zone in self.zones]

    def joules_between(self, start: list[int], end: list[int]) -> float:
        """Energy between two readings, allowing each counter to wrap around once."""
        total = 0
        for zone, first, last in zip(self.zones, start, end, strict=True):
            delta = last - first
            if delta < 0:
                delta += int((zone / "max_energy_range_uj").read_text())
            total += delta
        return total / 1e6


def _package_zones(root: Path) -> list[Path]:
    """Top-level RAPL zones (packages), whose counters already include their sub-zones."""
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        try:
            int((zone / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        zones.append(zone)
    return zones


def proxy_joules(cpu_seconds: float) -> float:
    """Energy estimate from CPU time, for machines without RAPL (labelled as such)."""
    return cpu_seconds * PROXY_WATTS_PER_CORE


def process_cpu_seconds() -> float:
    """User + system CPU time of every thread of this process (runtime pools included)."""
    # time.process_time reads CLOCK_PROCESS_CPUTIME_ID (ns); os.times() ticks in 10 ms.
    return time.process_time()

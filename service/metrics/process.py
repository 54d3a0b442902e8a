"""The `process_*` metrics of one server process, read without opening files in /proc.

prometheus_client's `ProcessCollector` opens and parses /proc/PID/stat and /proc/PID/limits
on every scrape; for a process with model runtimes' thread pools the kernel walks every
thread to answer, and the reads took most of what was left of a scrape's cost. The same
series come here from a system call (`times`), a limit read once per scrape with
`getrlimit`, the start time read once, and /proc/self/statm re-read through a file kept open.
Beside them, the time the cyclic garbage collector takes (`CollectorTime`).
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Iterable
from functools import cache

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class ProcessMetrics:
    """The series `ProcessCollector` exposes, with the same names and help."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._start_time = psutil.Process().create_time()
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        pages = os.pread(_statm(os.getpid()), 128, 0).split()
        times = os.times()
        return [
            GaugeMetricFamily(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                value=float(pages[0]) * PAGE_BYTES,
            ),
            GaugeMetricFamily(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                value=float(pages[1]) * PAGE_BYTES,
            ),
            GaugeMetricFamily(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                value=self._start_time,
            ),
            CounterMetricFamily(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                value=times.user + times.system,
            ),
            GaugeMetricFamily(
                "process_open_fds",
                "Number of open file descriptors.",
                value=len(os.listdir("/proc/self/fd")),
            ),
            GaugeMetricFamily(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                value=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            ),
        ]


@cache
def _statm(pid: int) -> int:
    """/proc/PID/statm opened once per process (a forked worker opens its own)."""
    return os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)


class CollectorTime:
    """Collections of Python's cyclic garbage collector and the time they took, per
    generation, counted from `gc.callbacks`.

    The standard `python_gc_*` series count collections and objects, not their cost; under
    a backlog that cost is a share of every request's CPU (docs/PERFORMANCE.md), and this
    shows it: `rate(perfserve_gc_seconds_total)` against `rate(process_cpu_seconds_total)`.
    One per process (`collector_time`): the collector is the process's, whatever registry
    reads it. Two reads of the thread's CPU clock per collection: the collector's own
    CPU time, which a busy machine does not inflate as it does wall time."""

    def __init__(self) -> None:
        self.seconds = [0.0] * len(gc.get_count())
        self.collections = [0] * len(self.seconds)
        self.longest = [0.0] * len(self.seconds)
        """The longest collection of each generation, CPU seconds (a benchmark resets it:
        on a quiet machine it is the pause a request may meet; not a series)."""
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        generation = info["generation"]
        took = time.thread_time() - self._started
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)
        self.collections[generation] += 1

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "perfserve_gc_seconds",
            "CPU time the cyclic garbage collector took in this process, by the oldest "
            "generation each collection scanned.",
            labels=["generation"],
        )
        for generation, seconds in enumerate(self.seconds):
            family.add_metric([str(generation)], seconds)
        return [family]


@cache
def collector_time() -> CollectorTime:
    """This process's `CollectorTime`, started on first use."""
    return CollectorTime()

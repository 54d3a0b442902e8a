"""The `process_*` metrics of one server process, read without opening files in /proc.

prometheus_client's `ProcessCollector` opens and parses /proc/PID/stat and /proc/PID/limits
on every scrape; for a process with model runtimes' thread pools the kernel walks every
thread to answer, and the reads took most of what was left of a scrape's cost. The same
series come here from a system call (`times`), a limit read once per scrape with
`getrlimit`, the start time read once, and /proc/self/statm re-read through a file kept open.
"""

from __future__ import annotations

import os
import resource
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

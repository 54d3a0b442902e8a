"""Where and how a benchmark ran: pinned threads, CPU affinity, machine (the code
revision and CPU model come from perfserve_common/machine.py, which the sweep's report uses too).

Timings only compare on the same machine with the same thread settings, so every result
carries these, and the history keys its records by them.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata

import psutil
import threadpoolctl

from perfserve.benchmarks.offline.summary_types import MachineDescription, Pinning
from perfserve_common.machine import cpu_model


@contextmanager
def pinned(threads: int, cpus: list[int] | None) -> Iterator[Pinning]:
    """Limit BLAS/OpenMP pools to `threads` and, if given, this process to `cpus`, until
    the block ends. onnxruntime sessions get the same thread count when they are opened.
    Yields what is in force, for the report."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    affinity = os.sched_getaffinity(0)
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        with threadpoolctl.threadpool_limits(threads):
            yield {
                "threads": threads,
                "cpu_affinity": sorted(os.sched_getaffinity(0)),
                "cpus_pinned": bool(cpus),
                "blas_pools": [
                    {"library": pool["internal_api"], "threads": pool["num_threads"]}
                    for pool in threadpoolctl.threadpool_info()
                ],
            }
    finally:
        os.sched_setaffinity(0, affinity)


def machine_description() -> MachineDescription:
    """What makes timings comparable: CPU model and count, memory, OS, and the versions of
    the runtime packages that do the arithmetic."""
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scikit-learn": _version("scikit-learn"),
        "onnxruntime": _version("onnxruntime"),
        "scipy": _version("scipy"),
    }


def machine_fingerprint(description: MachineDescription | None = None) -> str:
    """A short stable hash of `machine_description()`."""
    described: Mapping[str, object] = description or machine_description()
    text = "\n".join(f"{key}={described[key]}" for key in sorted(described))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"

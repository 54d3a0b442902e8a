"""The sweep's reading of the server's core: a fixed loop in a process pinned to it, which
runs slower when the core is shared, as the server would."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from perfserve_common.core_speed import core_speed, loop_rate

pytestmark = pytest.mark.integration  # pinned processes, real seconds

BUSY_LOOP = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


@contextmanager
def busy(cpu: int) -> Iterator[None]:
    """Another process spinning on `cpu`, as a busy neighbour would."""
    hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(cpu)])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def reading(cpu: int) -> float:
    speed = core_speed(cpu, 0.2)
    assert speed is not None
    return speed


def test_the_loop_counts_passes_per_second() -> None:
    assert loop_rate(0.05) > 0.1  # millions of passes a second on any machine


def test_a_core_shared_with_a_busy_process_reads_about_half_as_fast() -> None:
    cpu = min(os.sched_getaffinity(0))
    alone, shared = [], []
    for _ in range(3):  # interleaved, so a drift of the machine's speed hits both
        alone.append(reading(cpu))
        with busy(cpu):
            shared.append(reading(cpu))
    # Half the core is expected; the margin covers the host's own drift between readings.
    assert statistics.median(shared) < 0.8 * statistics.median(alone), (alone, shared)


def test_a_cpu_the_process_may_not_use_reads_as_unknown() -> None:
    assert core_speed(max(os.sched_getaffinity(0)) + 64, 0.05) is None

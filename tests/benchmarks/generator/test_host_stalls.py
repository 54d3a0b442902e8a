"""The host-stall probe: it counts the time its CPU is taken from it, and leaves nothing
running behind it."""

from __future__ import annotations

import os
import sys
import threading
import time

import psutil

from perfserve.benchmarks.generator.host_stalls import STALL_S, measure, probe, render


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_probe_counts_the_time_another_thread_takes_from_it() -> None:
    # A thread spinning beside the probe takes the interpreter from it for a switch
    # interval at a time: to the probe, exactly a CPU taken away for 5 ms.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        other = threading.Thread(target=spin, args=(0.3,))
        other.start()
        run = probe(0.6, cpu=0)
        other.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(run.stalls_s) >= 5 and len(run.switched) == len(run.stalls_s)
    assert all(gap > STALL_S for gap in run.stalls_s)
    assert max(run.stalls_s) >= 0.004
    assert run.seconds >= 0.6 and run.per_second == len(run.stalls_s) / run.seconds


def test_rounds_interleave_an_idle_and_a_busy_other_cpu_and_leave_nothing_running() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    children_before = {child.pid for child in psutil.Process().children()}
    result = measure(cpus[-1], cpus[0], seconds=0.2, rounds=2)
    assert [len(runs) for runs in result.runs.values()] == [2, 2]
    assert all(
        run.seconds >= 0.2 and run.steal_s >= 0 for runs in result.runs.values() for run in runs
    )
    # The busy side's spinner is gone (other tests' servers may still be running).
    assert {child.pid for child in psutil.Process().children()} == children_before
    assert os.sched_getaffinity(0) == set(cpus)  # and this process runs where it did
    table = render(result)
    assert f"Host stalls of CPU {cpus[-1]}" in table
    assert "| idle | " in table and "| busy | " in table and "another task ran" in table

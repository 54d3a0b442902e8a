"""How often the generator's CPU is taken from it: a spinning probe's gaps.

A load generator stopped for a few milliseconds sends late everything due meanwhile, and
at 8,000/s four milliseconds are 32 sends: three such stops a second put 1% of a step's
sends that late, which is its p99. No change to the generator's own code wins that
back, so the same-rate check needs to know how often it happens, and why.

The probe is a thread that never sleeps and reads the clock in a loop: any gap longer
than `STALL_S` between two readings is time its CPU was taken from it. After each
reading it also reads its count of involuntary context switches: a gap across which the
count moved is another task of this machine run in its place (the guest's scheduler
chose it); a gap without one is time the CPU itself was gone (the host stopping the
virtual CPU, or a long interrupt). It runs on the generator's CPU, in rounds that
interleave the server's CPU left idle and kept busy by a second spinning process (as a
server under load keeps it): when both CPUs are busy, tasks that wake up, which would
have run on the idle one, land on the generator's. The guest's steal time for the
probe's CPU is read beside it: the host may report some of the time it took, or none.

    perfserve bench-generator --rounds 0 --host-stalls 10
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

STALL_S = 0.0008
"""A gap longer than this is a stall: a send that late moves a millisecond-scale p99."""
SIDES = ("idle", "busy")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProbeRun:
    """One run of the probe: its length, the gaps longer than `STALL_S`, and the steal
    time the guest counted for the probe's CPU meanwhile."""

    seconds: float
    stalls_s: list[float]
    switched: list[bool]
    """For each stall, whether another task of the guest ran in it."""
    steal_s: float

    @property
    def per_second(self) -> float:
        return len(self.stalls_s) / self.seconds


@dataclass
class HostStalls:
    """Every round's probe run, with the server's CPU idle and busy."""

    probe_cpu: int
    other_cpu: int
    runs: dict[str, list[ProbeRun]] = field(default_factory=lambda: {s: [] for s in SIDES})


def probe(seconds: float, cpu: int) -> ProbeRun:
    """Spin for `seconds` (on `cpu`, where the caller runs), timing every gap between two
    clock readings longer than `STALL_S`."""
    stalls: list[float] = []
    switched: list[bool] = []
    clock = time.perf_counter
    steal = _steal_s(cpu)
    start = last = clock()
    last_switches = _involuntary_switches()
    end = start + seconds
    while (now := clock()) < end:
        switches = _involuntary_switches()
        if now - last > STALL_S:
            stalls.append(now - last)
            switched.append(switches != last_switches)
        last, last_switches = now, switches
    return ProbeRun(now - start, stalls, switched, _steal_s(cpu) - steal)


def _involuntary_switches() -> int:
    """How many times the guest's scheduler has put another task in this thread's place."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def measure(probe_cpu: int, other_cpu: int, seconds: float, rounds: int) -> HostStalls:
    """Rounds of the probe on `probe_cpu`, with `other_cpu` idle then busy in each."""
    result = HostStalls(probe_cpu, other_cpu)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {probe_cpu})
    try:
        for _ in range(rounds):
            for side in SIDES:
                with _kept_busy(other_cpu) if side == "busy" else nullcontext():
                    result.runs[side].append(probe(seconds, probe_cpu))
    finally:
        os.sched_setaffinity(0, before)
    return result


@contextmanager
def _kept_busy(cpu: int) -> Iterator[None]:
    """A process spinning on `cpu` for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spinner.pid, {cpu})
        time.sleep(0.2)  # running on its CPU before the probe starts
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _steal_s(cpu: int) -> float:
    """The steal time the guest has counted for `cpu` (0 where /proc/stat does not say)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        fields = line.split()
        if fields[0] == f"cpu{cpu}" and len(fields) > 8:
            return int(fields[8]) / TICKS_PER_S
    return 0.0


def render(result: HostStalls) -> str:
    """A Markdown table: per side, stalls a second (median and range over rounds), how
    many had another task in them, the longest gap, the time lost and the steal time
    counted."""
    lines = [
        f"Host stalls of CPU {result.probe_cpu} (gaps over {STALL_S * 1000:.1f} ms in a "
        f"spinning probe's clock), CPU {result.other_cpu} idle and busy, rounds interleaved:",
        "",
        f"| CPU {result.other_cpu} | stalls/s, median (range) | another task ran "
        "| longest gap (ms) | stalled (ms/s) | steal counted (ms/s) | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side, runs in result.runs.items():
        rates = [r.per_second for r in runs]
        longest = max((max(r.stalls_s, default=0.0) for r in runs), default=0.0)
        stalled = sum(sum(r.stalls_s) for r in runs) / sum(r.seconds for r in runs)
        steal = sum(r.steal_s for r in runs) / sum(r.seconds for r in runs)
        switched = sum(sum(r.switched) for r in runs)
        stalls = sum(len(r.stalls_s) for r in runs)
        lines.append(
            f"| {side} | {statistics.median(rates):.1f} ({min(rates):.1f} to {max(rates):.1f}) "
            f"| {switched} of {stalls} | {longest * 1000:.2f} | {stalled * 1000:.1f} "
            f"| {steal * 1000:.1f} | {len(runs)} |"
        )
    return "\n".join(lines)

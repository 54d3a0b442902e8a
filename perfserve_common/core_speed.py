"""How fast one CPU runs right now, read with a fixed loop in a short pinned process.

A virtual machine's CPU can run a third slower for seconds to tens of seconds while its
neighbours on the host are busy, with nothing to show for it inside the machine: no load
average, no steal time. A server's capacity moves with it. On a 2-core VM, a pure-Python
loop's rate and a server's closed-loop throughput, read in turn, each ranged over 1.35x
to 1.6x within a minute and rose and fell together (docs/PERFORMANCE.md, "The host's own
speed"). The sweep reads the server's core this way before every step, while server and
generator are idle, so a knee can be read against the speed of the machine under it.
The speed also moves within a step, so a reading before it describes the step in part.

    python -m perfserve_common.core_speed CPU [SECONDS]

prints the loop's rate on CPU, in millions of passes per second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

PROBE_SECONDS = 0.3
"""Long enough to average out a scheduler tick; short next to a sweep step."""
PASSES_PER_CHECK = 1000
STARTUP_TIMEOUT_S = 30.0


def loop_rate(seconds: float) -> float:
    """Millions of passes per second of a fixed pure-Python loop run for `seconds`: the
    same kind of work as the server's event loop, so it slows down as the server would."""
    passes = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(PASSES_PER_CHECK):
            passes += 1
    return passes / seconds / 1e6


def core_speed(cpu: int, seconds: float = PROBE_SECONDS) -> float | None:
    """`loop_rate` on `cpu`, from a process pinned to it; None when it cannot run there
    (no such CPU, or not allowed to this process)."""
    command = [sys.executable, "-m", "perfserve_common.core_speed", str(cpu), str(seconds)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S + seconds
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return float(done.stdout)


def _main(arguments: list[str]) -> int:
    cpu = int(arguments[0])
    seconds = float(arguments[1]) if len(arguments) > 1 else PROBE_SECONDS
    try:
        os.sched_setaffinity(0, {cpu})
    except (OSError, ValueError) as error:
        print(f"core_speed: cannot run on CPU {cpu}: {error}", file=sys.stderr)
        return 2
    print(f"{loop_rate(seconds):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

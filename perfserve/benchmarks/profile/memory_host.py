"""`perfserve serve` with two signals for `perfserve profile --memory`, nothing else.

    python -m perfserve.benchmarks.profile.memory_host STATS_FILE MEMRAY_FILE serve --store ...

SIGUSR1 appends a snapshot to STATS_FILE (one JSON line: resident memory, and live
objects after a full collection, counted as pymalloc's allocated blocks so that numbers
and strings count too, not only the containers the collector tracks);
SIGUSR2 starts memray's tracker writing to MEMRAY_FILE, or stops it when it runs. The
profile drives load between the signals, so a window of memray covers requests only,
never the start-up, and the snapshots bracket windows of the same load. Only the memory
profile starts servers this way; the serving path does not know of it.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import psutil


class Host:
    def __init__(self, stats: Path, capture: Path) -> None:
        self.stats = stats
        self.capture = capture
        self.tracker: Any = None

    def snapshot(self, signum: int, frame: FrameType | None) -> None:
        gc.collect()
        line = {
            "rss_bytes": psutil.Process().memory_info().rss,
            "objects": sys.getallocatedblocks(),
        }
        with self.stats.open("a") as stats:
            stats.write(json.dumps(line) + "\n")

    def toggle(self, signum: int, frame: FrameType | None) -> None:
        import memray

        if self.tracker is None:
            self.tracker = memray.Tracker(
                self.capture, trace_python_allocators=True, follow_fork=False
            )
            self.tracker.__enter__()
            event = "tracking"
        else:
            self.tracker.__exit__(None, None, None)
            self.tracker = None
            event = "stopped"
        with self.stats.open("a") as stats:
            stats.write(json.dumps({"event": event}) + "\n")


def main(argv: list[str]) -> int:
    host = Host(Path(argv[0]), Path(argv[1]))
    signal.signal(signal.SIGUSR1, host.snapshot)
    signal.signal(signal.SIGUSR2, host.toggle)
    from perfserve.cli import main as perfserve

    return perfserve(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What publishing and reading a rollout's evidence costs per tick, as the window fills.

Each of `--replicas` workers holds a window of `--window` records of the baseline and
the candidate (and a tenth as many shadow comparisons) and adds `--new` records per
tick; per tick it takes its new records (on the event loop) and appends them to its
journal (on a thread), and the controller reads every journal. Each figure is a median
over `--ticks` ticks, in milliseconds; the point is that none of them grows with the
window: each tick costs time proportional to the new records only.

    python -m perfserve.benchmarks.judge.evidence_cost [--window 50000] [--new 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from service.rollout.journal import EvidenceReader, Journal
from service.rollout.samples import SampleRecorder


def fill(recorder: SampleRecorder, n: int) -> None:
    """`n` answered requests alternating between the variants, n/10 comparisons."""
    for i in range(n):
        recorder.record("base" if i % 2 else "cand", 0.002, 200)
    compared = n // 10
    recorder.compare([False] * compared, [0.5] * compared, [0.5] * compared)


def measure(window: int, new: int, replicas: int, ticks: int) -> dict[str, float]:
    """Median milliseconds per tick: take (event loop), append (thread), read."""
    folder = Path(tempfile.mkdtemp(prefix="perfserve-evidence-")) / "samples"
    since = time.time()
    workers = [
        (SampleRecorder(window), Journal(folder, f"host-{k}", window)) for k in range(replicas)
    ]
    reader = EvidenceReader(folder, "base", "cand")
    for recorder, journal in workers:  # the window so far, already published
        recorder.follow("base", "cand", since)
        fill(recorder, window)
        journal.publish(1, *recorder.take())
    reader.read(since)
    took, appended, read = [], [], []
    for _ in range(ticks):
        for recorder, journal in workers:
            fill(recorder, new)
            started = time.perf_counter()
            batch = recorder.take()
            taken = time.perf_counter()
            journal.publish(1, *batch)
            took.append(taken - started)
            appended.append(time.perf_counter() - taken)
        started = time.perf_counter()
        evidence = reader.read(since)
        read.append(time.perf_counter() - started)
    held = len(evidence.baseline.latencies_s) + len(evidence.candidate.latencies_s)
    return {
        "take_ms": statistics.median(took) * 1000,
        "append_ms": statistics.median(appended) * 1000,
        "read_ms": statistics.median(read) * 1000,
        "records_in_window": float(held),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=50_000, help="records per worker")
    parser.add_argument("--new", type=int, default=200, help="new records per worker per tick")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=30)
    args = parser.parse_args(argv)
    figures = measure(args.window, args.new, args.replicas, args.ticks)
    print(
        f"window {args.window} records x {args.replicas} workers, {args.new} new per tick: "
        f"take {figures['take_ms']:.3f} ms (event loop), append {figures['append_ms']:.3f} ms "
        f"(thread), controller read {figures['read_ms']:.2f} ms "
        f"({figures['records_in_window']:.0f} answers in the window)"
    )


if __name__ == "__main__":
    main()

"""What watching input drift costs the server per request, in CPU time, at its worst:
every request its own batch of one row (batching off), as many as one interval brings.

The hot path's share is `observe` per batch; the drift loop's share is taking, joining,
counting and binning per row. Both are timed with the thread's CPU clock, which holds on
a machine busy with other work (wall time would not); medians over `--runs` runs of
`--rows` single-row batches (40,000: two seconds, the default interval, at 20,000/s).
`perfserve bench-http --baseline-env PERFSERVE_DRIFT=0` measures the same over HTTP.

    python -m perfserve.benchmarks.http.drift_cost [--store model_store] [--rows 40000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from service.drift import DriftMetrics, DriftMonitor
from service.metrics import Metrics
from service.settings import Settings
from service.store import load_holdout, load_manifest


def measure(store: Path, rows: int, runs: int) -> tuple[float, float]:
    """Median CPU nanoseconds: `observe` per batch, and the drift loop per row."""
    manifest = load_manifest(store)
    features = load_holdout(store, manifest).features
    metrics = Metrics(CollectorRegistry())
    defaults = Settings.model_fields
    monitor = DriftMonitor(
        manifest,
        DriftMetrics(metrics.feature_out_of_range, metrics.input_psi),
        enabled=True,
        window_rows=defaults["drift_window_rows"].default,
        min_rows=defaults["drift_min_rows"].default,
    )
    drift = monitor.for_variant("v")
    if drift is None:
        raise SystemExit(f"{store}: {monitor.reason}")
    batches = [features[i % len(features)][None, :].copy() for i in range(rows)]
    observe, loop = [], []
    for _ in range(runs):
        start = time.thread_time()
        for batch in batches:
            drift.observe(batch)
        middle = time.thread_time()
        drift.update(drift.take())
        end = time.thread_time()
        observe.append((middle - start) / rows * 1e9)
        loop.append((end - middle) / rows * 1e9)
    return statistics.median(observe), statistics.median(loop)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--rows", type=int, default=40_000, help="single-row batches per run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    observe, loop = measure(args.store, args.rows, args.runs)
    print(
        f"observe {observe:.0f} ns per batch (hot path), drift loop {loop:.0f} ns per row, "
        f"{observe + loop:.0f} ns per single-row request; medians of {args.runs} runs "
        f"of {args.rows:,} batches, CPU time"
    )


if __name__ == "__main__":
    main()

"""Interleaving and block sizing of the timed runs, on real runners."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perfserve.benchmarks.offline.resources import batch_of
from perfserve.benchmarks.offline.timing import TimingPlan, time_interleaved
from service.runtimes import Prediction, Runner, open_runner
from service.store import Dataset, Manifest


class Recorded:
    """A real runner that also notes, in a shared log, which variant ran with how many rows."""

    def __init__(self, name: str, inner: Runner, log: list[tuple[str, int]]) -> None:
        self.name, self.inner, self.log = name, inner, log

    def predict(self, rows: np.ndarray) -> Prediction:
        self.log.append((self.name, len(rows)))
        return self.inner.predict(rows)


def test_runs_interleave_variants_with_a_rotating_order(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    info = manifest.variants["onnx_int8"]
    log: list[tuple[str, int]] = []
    runners: dict[str, Runner] = {
        name: Recorded(name, open_runner(store / info.path, "onnx", "classification"), log)
        for name in "ABC"
    }
    batches = {size: batch_of(holdout.features, size) for size in (1, 4)}
    plan = TimingPlan(runs=3, calls_per_run=2, warmup_calls=1, batch_sizes=[1, 4])
    cells = time_interleaved(runners, batches, plan)
    warmup, timed = log[:6], log[6:]
    assert sorted(warmup) == sorted((n, s) for n in "ABC" for s in (1, 4))
    blocks = [timed[i] for i in range(0, len(timed), 2)]  # first call of each 2-call block
    assert [name for name, _ in blocks] == list("ABCABC" + "BCABCA" + "CABCAB")
    assert [size for _, size in blocks] == [1, 1, 1, 4, 4, 4] * 3
    assert all(cell.calls.shape == (3, 2) and np.all(cell.calls > 0) for cell in cells.values())


def test_blocks_fill_the_minimum_duration_unless_fixed() -> None:
    auto = TimingPlan(runs=2, calls_per_run=None, warmup_calls=3, min_block_seconds=0.01)
    # The first warm-up call (allocations) is ignored; 1 ms per call fills 10 ms in 10 calls.
    assert auto.calls_for([0.5, 0.001, 0.001]) == 10
    assert auto.calls_for([0.02]) == 5  # never fewer than 5
    assert auto.calls_for([1e-9, 1e-9]) == 10_000  # never more than 10,000
    assert TimingPlan(runs=2, calls_per_run=7, warmup_calls=0).calls_for([]) == 7

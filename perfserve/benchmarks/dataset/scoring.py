"""Score a whole dataset file with one variant: in this process, or as Dask tasks, one per
part of the file, each reading and scoring its part in chunks and sending back only counts.

Every pass runs BLAS and onnxruntime on one thread per process, so one process uses one
core and a LocalCluster's speed-up is the cores it adds, not threads hidden in a library.
"""

from __future__ import annotations

import functools
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from perfserve.benchmarks.dataset.reading import Chunk, Layout, Part, part_chunks
from service.quality import Task
from service.runtimes import Runner, open_variant
from service.store import load_manifest


@dataclass
class Tally:
    """What a pass (or a part of one) adds up to: counts and times, never rows."""

    rows: int = 0
    model_seconds: float = 0.0
    right: int = 0
    squared_error: float = 0.0
    scored_with_target: int = 0
    peak_rss_bytes: int = 0
    """The largest resident set of any process that did the work (getrusage ru_maxrss)."""
    processes: set[int] = field(default_factory=set)

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.model_seconds += other.model_seconds
        self.right += other.right
        self.squared_error += other.squared_error
        self.scored_with_target += other.scored_with_target
        self.peak_rss_bytes = max(self.peak_rss_bytes, other.peak_rss_bytes)
        self.processes |= other.processes

    def quality(self, task: Task) -> dict[str, float]:
        """Accuracy or RMSE over the rows that carried a target (none: empty)."""
        if not self.scored_with_target:
            return {}
        if task == "regression":
            return {"rmse": float(np.sqrt(self.squared_error / self.scored_with_target))}
        return {"accuracy": self.right / self.scored_with_target}


def score_chunks(runner: Runner, task: Task, chunks: Iterable[Chunk]) -> Tally:
    tally = Tally()
    with threadpool_limits(1):
        for chunk in chunks:
            started = time.perf_counter()
            labels = runner.predict(chunk.features).labels
            tally.model_seconds += time.perf_counter() - started
            tally.rows += len(labels)
            if chunk.target is not None:
                _score(tally, task, labels, chunk.target)
    tally.peak_rss_bytes = peak_rss_bytes()
    return tally


def _score(tally: Tally, task: Task, labels: np.ndarray, target: np.ndarray) -> None:
    tally.scored_with_target += len(labels)
    if task == "regression":
        tally.squared_error += float(np.sum((labels.astype(float) - target.astype(float)) ** 2))
    else:
        tally.right += int(np.sum(labels == target))


def peak_rss_bytes() -> int:
    """This process's peak resident set so far, as the kernel counts it (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def score_part(store: str, variant: str, source: Layout, part: Part, rows: int) -> Tally:
    """A Dask task: one part of the file with one variant (loaded once per worker)."""
    import os

    runner, task = load_variant(store, variant)
    tally = score_chunks(runner, task, part_chunks(source, part, rows))
    tally.processes = {os.getpid()}
    return tally


@functools.lru_cache(maxsize=8)
def load_variant(store: str, variant: str) -> tuple[Runner, Task]:
    """The variant, opened once per process (a worker keeps it for every task)."""
    manifest = load_manifest(Path(store))
    return open_variant(Path(store), manifest.variants[variant], manifest.task), manifest.task


def warm_variant(store: str, variant: str) -> None:
    """Load the variant in a worker ahead of the timed pass (nothing comes back: a model
    session does not pickle)."""
    load_variant(store, variant)

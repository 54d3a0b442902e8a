"""`perfserve bench --dataset FILE`: each variant's pass over the whole file, timed end to
end (reading included), in one process, on a LocalCluster, or on an existing cluster."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from perfserve.benchmarks.dataset.reading import Layout, chunks, parts
from perfserve.benchmarks.dataset.scheduler import CONNECT_TIMEOUT_S
from perfserve.benchmarks.dataset.scoring import (
    Tally,
    peak_rss_bytes,
    score_chunks,
    score_part,
    warm_variant,
)
from perfserve_common.usage import MissingTool
from service.runtimes import open_variant
from service.store import Manifest

CHUNK_ROWS = 65536
PART_BYTES = 32 << 20
"""About this much of the file per Dask task: enough work to hide a task's overhead, few
enough bytes that a worker's memory stays flat."""


class VariantPass(BaseModel):
    variant: str
    rows: int
    total_seconds: float
    """Wall time of the pass: reading, converting and scoring every row."""
    rows_per_second: float
    model_seconds: float
    """Time inside the model's predict calls, summed over every process."""
    quality: dict[str, float]


class DatasetResult(BaseModel):
    file: str
    mode: str
    workers: int
    chunk_rows: int
    passes: list[VariantPass]
    peak_rss_bytes: int
    """The largest resident set of this process (and, on a cluster, of any worker)."""
    peak_rss_note: str


@dataclass(frozen=True)
class Where:
    """Where to run: this process (both None), a LocalCluster, or a scheduler's address."""

    local_cluster: bool = False
    scheduler: str | None = None


def score_dataset(
    store: Path,
    manifest: Manifest,
    source: Layout,
    variants: list[str],
    where: Where,
    chunk_rows: int = CHUNK_ROWS,
) -> DatasetResult:
    if not where.local_cluster and where.scheduler is None:
        passes = [_local_pass(store, manifest, source, name, chunk_rows) for name in variants]
        return DatasetResult(
            file=str(source.path),
            mode="one process, one thread",
            workers=1,
            chunk_rows=chunk_rows,
            passes=passes,
            peak_rss_bytes=peak_rss_bytes(),
            peak_rss_note="this process, getrusage(RUSAGE_SELF).ru_maxrss",
        )
    with _client(where) as (client, mode):
        workers = len(client.scheduler_info()["workers"])
        size = source.path.stat().st_size
        cut = parts(source, max(1 << 20, min(PART_BYTES, size // (4 * max(workers, 1)))))
        for name in variants:  # loaded (and warmed) on every worker before any timing
            client.run(warm_variant, str(store.resolve()), name)
        results = [
            _cluster_pass(client, store, manifest, source, cut, name, chunk_rows)
            for name in variants
        ]
    passes = [result for result, _ in results]
    worker_peak = max(tally.peak_rss_bytes for _, tally in results)
    return DatasetResult(
        file=str(source.path),
        mode=mode,
        workers=workers,
        chunk_rows=chunk_rows,
        passes=passes,
        peak_rss_bytes=max(worker_peak, peak_rss_bytes()),
        peak_rss_note=(
            f"largest of this process ({peak_rss_bytes() >> 20} MiB) and any worker "
            f"({worker_peak >> 20} MiB), each getrusage ru_maxrss; {len(cut)} parts"
        ),
    )


def _local_pass(
    store: Path, manifest: Manifest, source: Layout, name: str, chunk_rows: int
) -> VariantPass:
    runner = open_variant(store, manifest.variants[name], manifest.task)
    started = time.perf_counter()
    tally = score_chunks(runner, manifest.task, chunks(source, chunk_rows))
    return _pass(name, tally, time.perf_counter() - started, manifest)


def _cluster_pass(
    client: Any,
    store: Path,
    manifest: Manifest,
    source: Layout,
    cut: list[Any],
    name: str,
    chunk_rows: int,
) -> tuple[VariantPass, Tally]:
    started = time.perf_counter()
    futures = [
        client.submit(score_part, str(store.resolve()), name, source, part, chunk_rows, pure=False)
        for part in cut
    ]
    total = Tally()
    for tally in client.gather(futures):
        total.add(tally)
    return _pass(name, total, time.perf_counter() - started, manifest), total


def _pass(name: str, tally: Tally, seconds: float, manifest: Manifest) -> VariantPass:
    return VariantPass(
        variant=name,
        rows=tally.rows,
        total_seconds=seconds,
        rows_per_second=tally.rows / seconds if seconds > 0 else 0.0,
        model_seconds=tally.model_seconds,
        quality=tally.quality(manifest.task),
    )


@contextmanager
def _client(where: Where) -> Iterator[tuple[Any, str]]:
    """A Dask client: on a LocalCluster of one single-threaded worker per usable core, or
    connected to `where.scheduler` (given up on after a few seconds, with one line)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingTool(
            "--dask and --dask-scheduler need Dask: pip install 'perfserve[dataset]'"
        ) from None
    if where.scheduler is not None:
        try:
            client = Client(  # type: ignore[no-untyped-call]
                where.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"
            )
        except (OSError, TimeoutError, ValueError) as error:
            raise MissingTool(
                f"no Dask scheduler answers at {where.scheduler} within {CONNECT_TIMEOUT_S} s "
                f"({type(error).__name__})"
            ) from None
        except Exception as error:  # something listens there, but not a Dask scheduler
            raise MissingTool(
                f"{where.scheduler} answered, but not as a Dask scheduler "
                f"({type(error).__name__}); check the address and port"
            ) from None
        with client:
            yield client, f"Dask scheduler {where.scheduler}"
        return
    cores = len(os.sched_getaffinity(0))
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client, f"Dask LocalCluster, {cores} single-threaded workers"


def render(result: DatasetResult) -> str:
    lines = [
        f"{result.file}: {result.mode}, chunks of {result.chunk_rows:,} rows",
        f"{'variant':<16}{'rows':>12}{'total s':>10}{'rows/s':>12}{'model s':>10}  quality",
    ]
    for p in result.passes:
        quality = ", ".join(f"{k} {v:.4f}" for k, v in p.quality.items()) or "(no target column)"
        lines.append(
            f"{p.variant:<16}{p.rows:>12,}{p.total_seconds:>10.2f}{p.rows_per_second:>12,.0f}"
            f"{p.model_seconds:>10.2f}  {quality}"
        )
    lines.append(f"peak RSS {result.peak_rss_bytes / 2**20:.0f} MiB ({result.peak_rss_note})")
    return "\n".join(lines)

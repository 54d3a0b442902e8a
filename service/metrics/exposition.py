"""What `/metrics` answers: one process's registry, or with several workers the sum of
all of them, read from prometheus_client's shared files (and the dead workers' live
gauges forgotten first)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.metrics.definitions import multiprocess_mode
from service.metrics.rendering import Renderer

# prometheus_client's file for one process's gauges in a `live*` multiprocess mode.
LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


# The samples a metric family's name stands for (prometheus_client's own suffixes).
SAMPLE_SUFFIXES = (
    "",
    "_total",
    "_bucket",
    "_count",
    "_sum",
    "_created",
    "_info",
    "_gcount",
    "_gsum",
)


def exposition(renderer: Renderer, names: Sequence[str] = ()) -> bytes:
    """The text to answer `/metrics` with, only `names` if given; with several workers,
    the sum over all of them.

    A name is a family's (`perfserve_batch_size`: all its samples) or one sample's
    (`perfserve_batch_size_count`), the same with one worker or several. One process's
    full text comes from its `Renderer` (well under a millisecond; see rendering.py)."""
    wanted = sample_names(names)
    if multiprocess_mode():
        forget_dead_workers()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        merged.register(SiblingWorkersCollector())
        return generate_latest(_Only(merged, wanted) if names else merged)
    if names:
        return generate_latest(renderer.registry.restricted_registry(wanted))
    return renderer.render()


def sample_names(names: Sequence[str]) -> set[str]:
    """Every sample name the given family or sample names select."""
    return {name + suffix for name in names for suffix in SAMPLE_SUFFIXES}


class _Only:
    """The samples of a registry with the given names; the workers' merged metrics are
    read from their files as a whole, so they can only be filtered after collection
    (as `restricted_registry` filters one process's)."""

    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            samples = [sample for sample in metric.samples if sample.name in self.names]
            if samples:
                only = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                only.samples = samples
                yield only


def workers_with_all_variants(variants: list[str]) -> int:
    """With several workers, how many have loaded every variant (from the shared gauges)."""
    forget_dead_workers()
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    counts = [merged.get_sample_value("perfserve_runners", {"variant": v}) or 0 for v in variants]
    return int(min(counts, default=0))


def forget_dead_workers() -> None:
    """Delete the live gauges (in flight, queue depth, runners, memory) of dead workers.

    uvicorn replaces a worker that dies, but the dead one's gauge files stay in the shared
    folder: a live sum would go on counting its runners, in-flight requests and queue,
    and readiness would count it as loaded while its replacement is still loading. This
    is `multiprocess.mark_process_dead`, for every worker that is no longer a child of
    the supervisor, tolerating a sibling that deletes the same file first. Counters and
    histograms keep the dead worker's share: totals must never go backwards.
    """
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    living = set()
    for child in psutil.Process(os.getppid()).children():
        # A killed worker stays a zombie child until the supervisor reaps it.
        with suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                living.add(child.pid)
    for name in os.listdir(folder):
        match = LIVE_GAUGE_FILE.fullmatch(name)
        if match is not None and int(match[1]) not in living:
            with suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))


class SiblingWorkersCollector:
    """`process_*` memory and CPU summed over every worker of this server.

    The standard process collector would describe only the worker that happens to answer
    the scrape; the workers are the children of one supervisor, so sum over those.
    """

    def collect(self) -> list[Any]:
        workers = psutil.Process(os.getppid()).children()
        rss = cpu = 0.0
        for worker in workers:
            try:
                rss += worker.memory_info().rss
                times = worker.cpu_times()
                cpu += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return [
            GaugeMetricFamily(
                "process_resident_memory_bytes", "Resident memory of all workers.", value=rss
            ),
            CounterMetricFamily(
                "process_cpu_seconds", "CPU time of all workers (user + system).", value=cpu
            ),
        ]

"""What the cyclic garbage collector costs per request, near capacity and with a backlog,
at several young-generation thresholds (`perfserve serve --gc-threshold`), side by side.

The app `perfserve serve` runs (the prediction path, a real batcher and model, batching
on, batches inline on the event loop as on one core) is driven through its ASGI
interface, in this process, without uvicorn or sockets: CONCURRENCY clients each send
their next single-row request as soon as their answer comes. At 64 the queue holds
about one batch; at 1,000 a backlog of some fifteen, and every waiting request's objects
(scope, headers, coroutine, future, rows) live until its batch runs. The thresholds
alternate cell by cell within each round (`gc.set_threshold`; the start-up heap is
frozen for all of them), and each cell reads this process's CPU time per request and,
from `gc.callbacks`, the collections per 1,000 requests, the time they took and the
objects they found in reference cycles (which only the collector frees). Medians
over the rounds; the load average is printed, as the figures move with the machine.

    taskset -c 0 python -m perfserve.benchmarks.http.gc_cost --store model_store \\
        --thresholds 700,50000 --concurrency 64,1000 --requests 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

from perfserve.benchmarks.offline.options import int_list
from service.app import create_app
from service.metrics.process import collector_time
from service.predict import Message, PredictEndpoint
from service.settings import Settings
from service.state import Service
from service.store import load_holdout, load_manifest

VARIANT = "onnx_int8"
READY_TIMEOUT_S = 120.0
App = PredictEndpoint[Service]


@dataclass
class Cell:
    """One threshold at one concurrency: a value per round."""

    threshold: int
    concurrency: int
    cpu_us: list[float] = field(default_factory=list)
    """Process CPU time per request, microseconds."""
    gc_us: list[float] = field(default_factory=list)
    """Time in the cyclic collector per request, microseconds."""
    collections: list[list[float]] = field(default_factory=list)
    """Collections per 1,000 requests, by generation."""
    garbage: list[float] = field(default_factory=list)
    """Objects found in reference cycles (freed only by the collector) per 1,000 requests."""
    longest_ms: list[float] = field(default_factory=list)
    """The longest collection, milliseconds: the pause a request may meet."""
    failed: int = 0
    """Answers other than 200, over all rounds (a full queue would make these 503s)."""


class _Exchange:
    """One request's `receive` and `send`: the body at once, the answer's status kept."""

    __slots__ = ("body", "status")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 0

    async def receive(self) -> Message:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def drive(
    app: App, body: bytes, requests: int, concurrency: int, path: str = f"/models/{VARIANT}/predict"
) -> int:
    """Send `requests` predictions through `app` at `path`, `concurrency` at a time (closed
    loop); how many were not answered 200."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    left = requests
    failed = 0

    async def client() -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            scope: dict[str, Any] = {
                "type": "http",
                "method": "POST",
                "path": path,
                "headers": headers,
            }
            exchange = _Exchange(body)
            await app(scope, exchange.receive, exchange.send)
            failed += exchange.status != 200

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return failed


async def run_rounds(
    app: App,
    body: bytes,
    thresholds: list[int],
    concurrencies: list[int],
    requests: int,
    rounds: int,
) -> list[Cell]:
    """Every cell once per round, thresholds alternating within each concurrency."""
    cells = [Cell(t, c) for c in concurrencies for t in thresholds]
    original = gc.get_threshold()
    try:
        for cell in cells:  # warm every path once, unmeasured
            gc.set_threshold(cell.threshold, *original[1:])
            await drive(app, body, max(cell.concurrency, requests // 10), cell.concurrency)
        for _ in range(rounds):
            for cell in cells:
                gc.set_threshold(cell.threshold, *original[1:])
                await measure_round(cell, app, body, requests)
    finally:
        gc.set_threshold(*original)
    return cells


async def measure_round(cell: Cell, app: App, body: bytes, requests: int) -> None:
    """Drive one round of `cell` and append what it cost."""
    gc_time = collector_time()
    seconds, collections = sum(gc_time.seconds), list(gc_time.collections)
    garbage = _cyclic_garbage()
    gc_time.longest = [0.0] * len(gc_time.longest)
    cpu = time.process_time()
    cell.failed += await drive(app, body, requests, cell.concurrency)
    cpu = time.process_time() - cpu
    cell.cpu_us.append(cpu / requests * 1e6)
    cell.gc_us.append((sum(gc_time.seconds) - seconds) / requests * 1e6)
    counts = zip(collections, gc_time.collections, strict=True)
    cell.collections.append([(n - before) * 1000 / requests for before, n in counts])
    cell.garbage.append((_cyclic_garbage() - garbage) * 1000 / requests)
    cell.longest_ms.append(max(gc_time.longest) * 1000)


def _cyclic_garbage() -> int:
    """Objects the collector has found unreachable (in cycles) so far, in all generations."""
    return sum(generation["collected"] for generation in gc.get_stats())


async def measure(
    store: Path, thresholds: list[int], concurrencies: list[int], requests: int, rounds: int
) -> list[Cell]:
    """Start the app on `store`, run the rounds, stop it."""
    async with ready_app(store, max(concurrencies)) as app:
        return await run_rounds(app, row_body(store), thresholds, concurrencies, requests, rounds)


@asynccontextmanager
async def ready_app(store: Path, max_queue: int) -> AsyncIterator[App]:
    """The app on `store` serving `VARIANT` alone, batches inline, its queue `max_queue`
    long, started and ready (its lifespan's work, without the lifespan protocol)."""
    app = create_app(
        Settings(store=store, variants=[VARIANT], inference="inline", max_queue=max_queue)
    )
    service = app.service
    await service.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not service.ready:
            if service.load_error is not None or time.monotonic() > deadline:
                raise SystemExit(f"{store}: not ready ({service.load_error or 'timed out'})")
            await asyncio.sleep(0.05)
        yield app
    finally:
        await service.stop()


def row_body(store: Path) -> bytes:
    """A single-row prediction body: the store's first hold-out row."""
    row = load_holdout(store, load_manifest(store)).features[0].tolist()
    return orjson.dumps({"instances": [row]})


def render(cells: list[Cell], rounds: int) -> str:
    """A markdown table of the medians."""
    lines = [
        "| threshold | concurrency | CPU µs/request | GC µs/request | GC share of CPU "
        "| collections per 1,000 requests (gen 0, 1, 2) | longest ms "
        "| cyclic garbage per 1,000 | non-200 |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for cell in cells:
        cpu, spent = statistics.median(cell.cpu_us), statistics.median(cell.gc_us)
        per_generation = [statistics.median(g) for g in zip(*cell.collections, strict=True)]
        counts = ", ".join(f"{n:.1f}" for n in per_generation)
        garbage, longest = statistics.median(cell.garbage), statistics.median(cell.longest_ms)
        lines.append(
            f"| {cell.threshold:,} | {cell.concurrency:,} | {cpu:.1f} | {spent:.2f} "
            f"| {spent / cpu:.1%} | {counts} | {longest:.2f} | {garbage:.1f} | {cell.failed} |"
        )
    spread = "; ".join(
        f"{c.threshold}@{c.concurrency}: " + ", ".join(f"{v:.1f}" for v in c.cpu_us) for c in cells
    )
    return "\n".join([*lines, "", f"medians of {rounds} rounds; CPU µs per round: {spread}"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--thresholds", type=int_list, default="700,50000")
    parser.add_argument("--concurrency", type=int_list, default="64,1000")
    parser.add_argument("--requests", type=int, default=20_000, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    cells = uvloop.run(
        measure(args.store, args.thresholds, args.concurrency, args.requests, args.rounds)
    )
    print(render(cells, args.rounds))
    print(f"load average {before:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""`perfserve demo`: build the store, start the service, drive it, print what it measured."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from service.build import build_store
from service.process import running_server
from service.store import StoreError, load_holdout, load_manifest

CONCURRENCY = 8
SECONDS_PER_VARIANT = 3.0


@dataclass
class VariantRun:
    variant: str
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    server_queue_ms: float
    server_infer_ms: float


def run_demo(store: Path, out: Path) -> list[VariantRun]:
    try:
        load_manifest(store)
    except StoreError:
        print(f"building the model store in {store} ...")
        build_store(store)
    manifest = load_manifest(store)
    rows = load_holdout(store, manifest).features
    print("starting perfserve serve on a free loopback port ...")
    with running_server(store) as server:
        runs = [asyncio.run(_drive(server.url, variant, rows)) for variant in manifest.variants]
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps([asdict(run) for run in runs], indent=2))
    print(_table(runs))
    print(f"report written to {out / 'demo.json'}")
    return runs


async def _drive(url: str, variant: str, rows: np.ndarray) -> VariantRun:
    """Closed-loop clients, one row per request, for a few seconds."""
    latencies: list[float] = []
    queue: list[float] = []
    infer: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + SECONDS_PER_VARIANT

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = index
        while time.perf_counter() < stop_at:
            body = {"instances": [rows[i % len(rows)].tolist()]}
            sent = time.perf_counter()
            response = await http.post(f"{url}/models/{variant}/predict", json=body)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                errors += 1
                continue
            timing = dict(
                part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
            )
            queue.append(float(timing["queue"]))
            infer.append(float(timing["infer"]))
            i += CONCURRENCY

    started = time.perf_counter()
    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(client(i, http) for i in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    millis = np.asarray(latencies) * 1000
    return VariantRun(
        variant=variant,
        requests=len(latencies),
        errors=errors,
        throughput_rps=len(latencies) / elapsed,
        p50_ms=float(np.percentile(millis, 50)),
        p99_ms=float(np.percentile(millis, 99)),
        server_queue_ms=float(np.median(queue)) if queue else float("nan"),
        server_infer_ms=float(np.median(infer)) if infer else float("nan"),
    )


def _table(runs: list[VariantRun]) -> str:
    header = f"{'variant':<14}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
    header += f"{'queue ms':>10}{'infer ms':>10}"
    lines = [header]
    for run in runs:
        lines.append(
            f"{run.variant:<14}{run.requests:>9}{run.errors:>7}{run.throughput_rps:>9.0f}"
            f"{run.p50_ms:>8.2f}{run.p99_ms:>8.2f}{run.server_queue_ms:>10.3f}"
            f"{run.server_infer_ms:>10.3f}"
        )
    return "\n".join(lines)

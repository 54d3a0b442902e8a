"""`perfserve bench-http --scrape-cost`: what one full `/metrics` scrape costs the server.

A server runs one event loop on one core, so the CPU a scrape takes is time that loop
does not serve predictions (rendering in a thread does not help: the thread holds the
GIL). The benchmark serves every variant, then, per round, scrapes `/metrics` a number of
times with one prediction to every variant before each scrape (so each scrape renders
freshly changed histograms, as under load), and subtracts the same predictions' cost
measured without scrapes. The server is pinned to one CPU list and this client to the
other; rounds interleave the servers (this checkout and, with `--baseline`, another).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil

from perfserve.modelstore.build import build_store
from perfserve_common.processes import running_server
from service.store import StoreError, load_holdout, load_manifest

SCRAPES_PER_ROUND = 200


@dataclass
class ScrapeCost:
    """Every round's reading of one server."""

    server: str
    bytes: int = 0
    cpu_ms: list[float] = field(default_factory=list)
    """Server CPU per full scrape, the predictions between scrapes taken out."""
    latency_ms: list[float] = field(default_factory=list)
    """Median time the client waited for one scrape's answer."""

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_ms)


def run_scrape_cost(
    store: Path,
    out: Path,
    rounds: int,
    server_cpus: str,
    client_cpus: str,
    baseline: Path | None,
) -> list[ScrapeCost]:
    """Measure, write scrape-cost.json and print a table; the readings."""
    try:
        manifest = load_manifest(store)
    except StoreError:
        manifest = build_store(store)
    store = store.resolve()  # a baseline server runs in its own checkout
    body = {"instances": [load_holdout(store, manifest).features[0].tolist()]}
    builds: list[tuple[str, Path | None]] = [("this checkout", None)]
    if baseline is not None:
        builds.append((f"baseline {baseline}", baseline.resolve()))
    os.sched_setaffinity(0, {int(cpu) for cpu in client_cpus.split(",")})
    with ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=30.0))
        servers = []
        for name, checkout in builds:
            server = stack.enter_context(running_server(store, cpus=server_cpus, checkout=checkout))
            servers.append((ScrapeCost(name), server.url, psutil.Process(server.process.pid)))
        predict = [f"{url}/models/{v}/predict" for _, url, _ in servers for v in manifest.variants]
        for url in predict:  # every variant has served: every series exists
            for _ in range(20):
                client.post(url, json=body).raise_for_status()
        for round_ in range(rounds):
            for cost, url, process in servers:
                posts = [p for p in predict if p.startswith(url + "/")]
                _measure(client, cost, url, process, partial(_predict, client, posts, body))
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    results = [cost for cost, _, _ in servers]
    out.mkdir(parents=True, exist_ok=True)
    (out / "scrape-cost.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(render(results))
    return results


def _predict(client: httpx.Client, urls: list[str], body: dict[str, Any]) -> None:
    for url in urls:
        client.post(url, json=body).raise_for_status()


def _measure(
    client: httpx.Client,
    cost: ScrapeCost,
    url: str,
    process: psutil.Process,
    traffic: Callable[[], None],
) -> None:
    """One round: the traffic alone, then the traffic with a scrape after each."""
    alone = _cpu_s(process)
    for _ in range(SCRAPES_PER_ROUND):
        traffic()
    alone = _cpu_s(process) - alone
    latencies = []
    scraped = _cpu_s(process)
    for _ in range(SCRAPES_PER_ROUND):
        traffic()
        answer = client.get(f"{url}/metrics")
        answer.raise_for_status()
        latencies.append(answer.elapsed.total_seconds() * 1000)
    scraped = _cpu_s(process) - scraped
    cost.bytes = len(answer.content)
    cost.cpu_ms.append((scraped - alone) / SCRAPES_PER_ROUND * 1000)
    cost.latency_ms.append(statistics.median(latencies))


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def render(results: list[ScrapeCost]) -> str:
    """A Markdown table of medians over rounds."""
    lines = [
        "| server | bytes | server CPU per scrape (ms) | scrape latency p50 (ms) | rounds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.bytes} | {r.median_cpu_ms:.2f} | "
            f"{statistics.median(r.latency_ms):.2f} | {len(r.cpu_ms)} |"
        )
    return "\n".join(lines)

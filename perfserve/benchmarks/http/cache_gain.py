"""`perfserve bench-cache`: what the row cache (`--cache-rows`) gains, at chosen hit ratios.

Two servers of the same variant on one pinned core, one with the cache and one without,
take wrk's load in turn (wrk pinned to another core), for each body mix (`--bodies
zipf:H`, sent in turn from a file, see loadtests/bodies.py): requests per second, p50,
p99 and the server's CPU per request, in interleaved rounds so that a busy machine's
drift hits both alike. The hit ratio is not assumed: each cell reads it from the cached
server's own `perfserve_cache_requests_total`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.bodies import BodyMix, zipf_bodies
from perfserve.benchmarks.http.http_overhead import (
    WRK_DONE,
    Cell,
    Target,
    measure,
    run_wrk,
    wrk_and_store,
)
from perfserve_common.processes import running_server
from perfserve_common.usage import UsageError
from service.store import load_holdout

# Each wrk connection takes the next body of the file, in turn, as the sweep's engines do.
WRK_BODIES = """
local bodies = {{}}
for line in io.lines("{path}") do bodies[#bodies + 1] = line end
local next_body = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end
"""
CACHE, NO_CACHE = "cache", "no cache"


@dataclass
class CacheCell(Cell):
    """A cell of one server (with or without the cache) under one body mix."""

    mix: str = ""
    cached: bool = False
    hit_ratio: list[float] = field(default_factory=list)
    """Per round, the share of the cell's requests the cache answered (cached server)."""


def run_cache_benchmark(
    store: Path,
    out: Path,
    variant: str,
    mixes: list[BodyMix],
    cache_rows: int,
    concurrencies: list[int],
    seconds: float,
    rounds: int,
    cpus: tuple[str, str],
) -> list[CacheCell]:
    """Every mix and concurrency, each against the server without the cache, then with
    it, `rounds` times over; `cpus` are the servers' and wrk's CPU lists."""
    wrk, manifest = wrk_and_store(store)
    if variant not in manifest.variants:
        known = ", ".join(manifest.variants)
        raise UsageError(f"--variant {variant}: not in {store}; it has {known}")
    rows = load_holdout(store, manifest).features
    server_cpu, client_cpu = cpus
    measured: list[tuple[CacheCell, Target]] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cache-")))
        servers = {
            name: stack.enter_context(
                running_server(store, options=["--cache-rows", str(size)], cpus=server_cpu)
            )
            for name, size in ((NO_CACHE, 0), (CACHE, cache_rows))
        }
        for index, mix in enumerate(mixes):
            # Each mix's rare rows of its own (salt): none is still cached from another.
            bodies = zipf_bodies(rows, 1, mix.hit_ratio, salt=index + 1)
            script = _bodies_script(folder / f"mix-{index}", bodies)
            for name, server in servers.items():
                target = Target(
                    f"{variant} {name}",
                    f"{server.url}/models/{variant}/predict",
                    script,
                    f"{server.url}/metrics",
                    variant,
                    server.process.pid,
                )
                run_wrk(wrk, client_cpu, script, target.url, 8, 1)  # warm, and fill the cache
                measured += [
                    (CacheCell(target.name, c, mix=str(mix), cached=name == CACHE), target)
                    for c in concurrencies
                ]
        for round_ in range(rounds):
            for cell, target in measured:
                hits_before, looked_up_before = _cache_counts(target)
                measure(wrk, client_cpu, target, cell, seconds)
                hits, looked_up = _cache_counts(target)
                hits, looked_up = hits - hits_before, looked_up - looked_up_before
                if looked_up:
                    cell.hit_ratio.append(hits / looked_up)
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    cells = [cell for cell, _ in measured]
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-cache.json").write_text(json.dumps([asdict(c) for c in cells], indent=2))
    report = render(cells, cache_rows)
    (out / "bench-cache.md").write_text(report)
    print(report)
    return cells


def _bodies_script(stem: Path, bodies: list[bytes]) -> Path:
    """A wrk script sending `bodies` in turn, and the file it reads them from."""
    lines = stem.with_suffix(".bodies")
    lines.write_bytes(b"\n".join(bodies) + b"\n")
    script = stem.with_suffix(".lua")
    script.write_text((WRK_BODIES + WRK_DONE).format(path=lines))
    return script


def _cache_counts(target: Target) -> tuple[float, float]:
    """(hits, lookups) of the target's variant cache so far, from `/metrics`."""
    hits = looked_up = 0.0
    assert target.metrics_url is not None
    text = httpx.get(target.metrics_url, params={"name[]": "perfserve_cache_requests"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "perfserve_cache_requests_total":
                continue
            if sample.labels.get("variant") == target.variant:
                looked_up += sample.value
                hits += sample.value if sample.labels.get("outcome") == "hit" else 0.0
    return hits, looked_up


def render(cells: list[CacheCell], cache_rows: int) -> str:
    """Medians per cell, then each mix's gain: the cached server against the other."""
    lines = [
        "| bodies | target | concurrency | req/s | p50 ms | p99 ms | server CPU µs/request "
        "| hit ratio | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in cells:
        hit = f"{cell.median(cell.hit_ratio):.2f}" if cell.hit_ratio else ""
        cpu = f"{cell.median(cell.cpu_us):.1f}" if cell.cpu_us else ""
        lines.append(
            f"| {cell.mix} | {cell.target} | {cell.concurrency} | {cell.median(cell.rps):,.0f} "
            f"| {cell.median(cell.p50_ms):.3f} | {cell.median(cell.p99_ms):.3f} | {cpu} "
            f"| {hit} | {cell.failed} |"
        )
    lines += [
        "",
        f"| bodies | concurrency | req/s, cache of {cache_rows} rows over none "
        "| p50, cache over none | CPU per request, cache over none |",
        "| --- | --- | --- | --- | --- |",
    ]
    by_key = {(c.mix, c.cached, c.concurrency): c for c in cells}
    for on in (cell for cell in cells if cell.cached):
        off = by_key[on.mix, False, on.concurrency]
        lines.append(
            f"| {on.mix} | {on.concurrency} | {on.median(on.rps) / off.median(off.rps):.2f}x "
            f"| {on.median(on.p50_ms) / off.median(off.p50_ms):.2f}x "
            f"| {on.median(on.cpu_us) / off.median(off.cpu_us):.2f}x |"
        )
    return "\n".join(lines) + "\n"

"""`perfserve profile --memory`: what serving requests allocates, and whether it leaks.

A server of its own (perfserve/benchmarks/profile/memory_host.py) on the server's core,
the same open-loop load as the CPU profile. After a warm-up, two windows of the load run
untracked, each bracketed by a snapshot (resident memory; live objects, as pymalloc's
allocated blocks, after a full collection): RSS growth per 100,000 requests, and whether
RSS and live objects stay flat from one window to the next (a leak grows with the
requests served). Then one window runs under memray (Python allocators traced too, so
pymalloc's small objects count): bytes allocated per request and the sites that
allocate the most.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.bodies import encode_bodies, holdout_rows
from loadtests.engines.native import NativeEngine
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.sweep.steps import StepRunner, StepSettings
from perfserve.benchmarks.profile.run import MAX_IN_FLIGHT, WARMUP_S, ProfileSettings
from perfserve.benchmarks.profile.spy import EnvironmentProblem
from perfserve_common.processes import ServerProcess, free_port, wait_ready

SNAPSHOT_TIMEOUT_S = 30.0
TOP_SITES = 10
FLAT_RSS_BYTES = 2**20
FLAT_RSS_BYTES_PER_REQUEST = 64
"""The second of two windows of the same load is flat when RSS grew by less than the
larger of these (the allocator takes memory from the system in steps of up to a MiB) ..."""
FLAT_OBJECTS_PER_REQUEST = 1.0
"""... and live objects (pymalloc's allocated blocks: every object, numbers and strings
too, not only the containers the collector tracks) grew by less than one per request it
served: what the smallest leak, one object a request, would add. The count moves by a
few thousand between two idle moments of a server that leaks nothing, so windows need
several thousand requests for the check to see such a leak."""


@dataclass
class Host:
    server: ServerProcess
    stats: Path
    capture: Path

    def signal(self, signum: int, lines: int) -> dict[str, Any]:
        """Send `signum` and wait for the host's answer: its `lines`-th stats line."""
        os.kill(self.server.process.pid, signum)
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        while time.monotonic() < deadline:
            written = self.stats.read_text().splitlines() if self.stats.exists() else []
            if len(written) >= lines:
                answer: dict[str, Any] = json.loads(written[lines - 1])
                return answer
            time.sleep(0.05)
        raise RuntimeError(f"the memory host did not answer signal {signum}")


@contextmanager
def memory_host(
    store: Path, cpu: int, folder: Path, env: dict[str, str] | None = None
) -> Iterator[Host]:
    port = free_port()
    stats, capture = folder / "stats.jsonl", folder / "capture.bin"
    host = [
        sys.executable,
        "-m",
        "perfserve.benchmarks.profile.memory_host",
        str(stats),
        str(capture),
    ]
    serve = ["serve", "--store", str(store), "--port", str(port)]
    command = ["taskset", "-c", str(cpu), *host, *serve]
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        environment = {**os.environ, **(env or {})}
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(server, 60.0)
        yield Host(server, stats, capture)
    finally:
        server.stop()


def memory_profile(
    store: Path,
    settings: ProfileSettings,
    cpu: int,
    out: Path,
    env: dict[str, str] | None = None,
) -> str:
    """Run the memory windows, write memory.json and memory.md; returns the Markdown.
    `env` is added to the server's environment (a build to check, on its PYTHONPATH)."""
    try:
        import memray  # noqa: F401
    except ModuleNotFoundError:
        raise EnvironmentProblem(
            "memray is not installed: pip install 'perfserve[profile]' (or pip install memray)"
        ) from None
    window_s = max(2.0, settings.seconds / settings.repeats)
    with tempfile.TemporaryDirectory(prefix="perfserve-memory-") as scratch:
        folder = Path(scratch)
        with memory_host(store, cpu, folder, env) as host:
            result = _windows(host, store, settings, window_s)
        result.update(_allocations(host.capture, result["tracked_requests"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=2))
    text = memory_text(result)
    (out / "memory.md").write_text(text)
    return text


def _windows(host: Host, store: Path, settings: ProfileSettings, window_s: float) -> dict[str, Any]:
    url = host.server.url
    cpus = [settings.generator_cpu] if settings.generator_cpu is not None else None
    engine = NativeEngine(url, 1, MAX_IN_FLIGHT, LoadgenMetrics(), cpus)
    steps = StepSettings(step_seconds=window_s, window_seconds=window_s / 4)
    try:
        engine.setup(encode_bodies(holdout_rows(store), 1), 1, settings.variant)
        runner = StepRunner(
            engine, url, settings.variant, [settings.variant], steps, lambda _: None
        )
        runner.run(settings.rate, seconds=WARMUP_S, extend=False)
        snapshots = [host.signal(signal.SIGUSR1, 1)]
        requests = []
        for number in (2, 3):
            step = runner.run(settings.rate, seconds=window_s, extend=False)
            requests.append(step.server.requests)
            snapshots.append(host.signal(signal.SIGUSR1, number))
        host.signal(signal.SIGUSR2, 4)
        tracked = runner.run(settings.rate, seconds=window_s, extend=False)
        host.signal(signal.SIGUSR2, 5)
    finally:
        engine.close()
    return _growth(snapshots, requests) | {"tracked_requests": tracked.server.requests,
                                            "rate": settings.rate, "variant": settings.variant,
                                            "window_seconds": window_s}  # fmt: skip


def _growth(snapshots: list[dict[str, Any]], requests: list[float]) -> dict[str, Any]:
    """RSS growth per 100,000 requests over both windows, and whether the second window
    ended where the first did (flat) in RSS and in live objects."""
    start, first, second = snapshots
    rss_delta = second["rss_bytes"] - start["rss_bytes"]
    between_rss = second["rss_bytes"] - first["rss_bytes"]
    between_objects = second["objects"] - first["objects"]
    return {
        "snapshots": snapshots,
        "window_requests": requests,
        "rss_growth_bytes_per_100k": rss_delta / sum(requests) * 1e5 if sum(requests) else None,
        "rss_between_windows_bytes": between_rss,
        "objects_between_windows": between_objects,
        "flat": between_rss < max(FLAT_RSS_BYTES, FLAT_RSS_BYTES_PER_REQUEST * requests[1])
        and between_objects < FLAT_OBJECTS_PER_REQUEST * requests[1],
    }


def _allocations(capture: Path, requests: float) -> dict[str, Any]:
    """memray's totals over the tracked window, per request, and its top sites."""
    report = capture.with_suffix(".json")
    command = [sys.executable, "-m", "memray", "stats", "--json", "-f", "-o", str(report),
               "-n", str(TOP_SITES), str(capture)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    stats = json.loads(report.read_text())
    per_request = 1 / requests if requests else float("nan")
    return {
        "bytes_allocated_per_request": stats["total_bytes_allocated"] * per_request,
        "allocations_per_request": stats["total_num_allocations"] * per_request,
        "top_sites_by_size": [
            {"site": _short(s["location"]), "bytes_per_request": s["size"] * per_request}
            for s in stats["top_allocations_by_size"]
        ],
        "top_sites_by_count": [
            {"site": _short(s["location"]), "allocations_per_request": s["count"] * per_request}
            for s in stats["top_allocations_by_count"]
        ],
    }


def _short(location: str) -> str:
    """memray's `function:/absolute/path.py:line` with the path from its package on."""
    function, _, where = location.partition(":")
    for marker in ("site-packages/", "/lib/python3", str(Path.cwd()) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "/lib/python3":
                where = where.split("/", 1)[-1]
    return f"{function} ({where})"


def memory_text(result: dict[str, Any]) -> str:
    lines = [
        f"# Memory: {result['variant']} at {result['rate']:,.0f}/s",
        "",
        f"Allocated per request (memray, one window of {result['tracked_requests']:,.0f} "
        f"requests): {result['bytes_allocated_per_request']:,.0f} bytes in "
        f"{result['allocations_per_request']:.1f} allocations.",
        "",
        f"RSS growth per 100,000 requests: {result['rss_growth_bytes_per_100k'] / 2**20:+.2f} "
        f"MiB; between two windows of the same load: RSS "
        f"{result['rss_between_windows_bytes'] / 2**20:+.2f} MiB, live objects "
        f"{result['objects_between_windows']:+,d} ({'flat' if result['flat'] else 'GROWING'}).",
        "",
        "| top sites by size | bytes/request |",
        "| --- | ---: |",
    ]
    lines += [
        f"| `{s['site']}` | {s['bytes_per_request']:,.0f} |" for s in result["top_sites_by_size"]
    ]
    lines += ["", "| top sites by count | allocations/request |", "| --- | ---: |"]
    lines += [
        f"| `{s['site']}` | {s['allocations_per_request']:.2f} |"
        for s in result["top_sites_by_count"]
    ]
    return "\n".join(lines) + "\n"

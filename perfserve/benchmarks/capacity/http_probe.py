"""What HTTP adds to each request, measured on a real `perfserve serve` in a few seconds.

A bench times the model alone; a replica also reads, parses, routes, queues and answers
every request, which for a sub-millisecond model costs more than the model does. The
probe starts the service on a free loopback port, sends single requests one after the
other to each variant, and takes the server process's CPU time per request minus the
model's own time, which the service reports in `Server-Timing` (`infer;dur=`). CPU time,
not wall time, so the client's own cost and other load on the machine stay out of it:
it is what one replica spends per request besides the model, the figure capacity
planning adds to the bench's model time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from loadtests.bodies import encode_bodies, holdout_rows
from perfserve_common.processes import running_server

WARMUP_REQUESTS = 50
MIN_CPU_S = 0.5
"""Server CPU time each variant's probe runs for: the kernel counts it in 10 ms ticks, so
this keeps the figure within 2%."""
MAX_REQUESTS = 5000
BLOCK = 50
_INFER = re.compile(r"infer;dur=([0-9.]+)")


@dataclass(frozen=True)
class Probe:
    """Per-request costs of one variant behind HTTP, in seconds."""

    variant: str
    requests: int
    rows_per_request: int
    server_cpu_s: float
    """Server CPU time per request, everything included."""
    infer_s: float
    """Model time per request, from `Server-Timing`."""

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.server_cpu_s - self.infer_s)

    def describe(self) -> str:
        return (
            f"HTTP overhead {self.overhead_s * 1000:.3f} ms/request measured by a probe "
            f"(server CPU {self.server_cpu_s * 1000:.3f} ms minus Server-Timing infer "
            f"{self.infer_s * 1000:.3f} ms, {self.requests} sequential requests of "
            f"{self.rows_per_request} row(s) to `perfserve serve` with default settings)"
        )


def probe_overhead(
    store: Path, variants: list[str], rows_per_request: int, min_cpu_s: float = MIN_CPU_S
) -> dict[str, Probe]:
    """Start the service on `store` and measure each variant's per-request costs: requests
    in blocks until the server has spent `min_cpu_s` on them (or MAX_REQUESTS were sent)."""
    body = encode_bodies(holdout_rows(store), rows_per_request, count=1)[0]
    probes = {}
    with running_server(store) as server, httpx.Client(timeout=10.0) as client:
        process = psutil.Process(server.process.pid)
        for name in variants:
            url = f"{server.url}/models/{name}/predict"
            _send(client, url, body, WARMUP_REQUESTS)
            before, sent, infer = _cpu_seconds(process), 0, 0.0
            while _cpu_seconds(process) - before < min_cpu_s and sent < MAX_REQUESTS:
                infer += _send(client, url, body, BLOCK)
                sent += BLOCK
            cpu = _cpu_seconds(process) - before
            probes[name] = Probe(name, sent, rows_per_request, cpu / sent, infer / sent)
    return probes


def _send(client: httpx.Client, url: str, body: bytes, requests: int) -> float:
    """Send `requests` one after the other; the model seconds the server reported."""
    infer_ms = 0.0
    for _ in range(requests):
        answer = client.post(url, content=body, headers={"content-type": "application/json"})
        answer.raise_for_status()
        found = _INFER.search(answer.headers.get("server-timing", ""))
        if found is None:
            raise RuntimeError(f"{url} answered without Server-Timing infer")
        infer_ms += float(found.group(1))
    return infer_ms / 1000


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)

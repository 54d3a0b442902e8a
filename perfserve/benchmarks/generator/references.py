"""Open-loop generators we did not build into the sweep, to check its figures against.

Two, each running one constant-rate step against a perfserve URL and returning the same
figures, so a knee search or a latency row can use either:

- **k6** (`--k6 PATH`): its constant-arrival-rate executor, a tool we did not write. It
  times from its send, and one core offers about 3,000 requests a second.
- **openloop** (`--openloop`): `perfserve/benchmarks/generator/openloop.c`, a minimal epoll
  client in C compiled here, sharing no code with the sweep's engines. It times from the
  schedule like the native engine, and one core offers 20,000 requests a second against the
  bare-ASGI floor, enough for the ONNX variants' knees.

And `perfserve/benchmarks/generator/instant.c`, a server that answers at once and reports a
Server-Timing total of zero: openloop against it measures the wire alone, the floor under
every "added" figure.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from perfserve_common.usage import MissingTool, UsageError
from service.store import load_holdout

Step = Callable[[str, float, float], dict[str, Any]]
"""One step at (url, rate, seconds): sent_qps, p50_ms and p99_ms, outside_p50_ms and
outside_p99_ms (less each answer's `Server-Timing` total), dropped and failed requests,
and late_share (sends late by the generator's own doing, where it can tell)."""

WARMUP_SHARE = 0.25
"""The first quarter of a step is left out of its percentiles, as the sweep leaves out
its first window (a quarter of a step by default): connections opening, the server's
queue filling to its level."""
MAX_IN_FLIGHT = 256
"""openloop's connections, the sweep's `--max-in-flight` default."""
OPENLOOP_SOURCE = Path(__file__).with_name("openloop.c")
INSTANT_SOURCE = Path(__file__).with_name("instant.c")
K6_SCRIPT = """
import exec from 'k6/execution';
import http from 'k6/http';
import {{ Trend }} from 'k6/metrics';
const measured = new Trend('measured', true);
const outside = new Trend('outside', true);
export const options = {{
  scenarios: {{ open: {{
    executor: 'constant-arrival-rate', rate: {rate}, timeUnit: '1s', duration: '{seconds}s',
    preAllocatedVUs: 64, maxVUs: 1000,
  }} }},
  summaryTrendStats: ['p(50)', 'p(99)'],
}};
const body = open('{body}');
export default function () {{
  const answer = http.post('{url}', body, {{ headers: {{ 'content-type': 'application/json' }} }});
  if (Date.now() - exec.scenario.startTime < {warmup_ms}) return;
  measured.add(answer.timings.duration);
  const total = /total;dur=([0-9.]+)/.exec(answer.headers['Server-Timing'] || '');
  if (total) outside.add(answer.timings.duration - parseFloat(total[1]));
}}
"""


def k6_step(k6: str, store: Path, variant: str, cpu: str) -> Step:
    """k6 runs, pinned to `cpu`, POSTing one hold-out row to `variant`."""
    return lambda url, rate, seconds: run_k6(k6, url, store, variant, rate, seconds, cpu)


def openloop_step(binary: Path, store: Path, variant: str, cpu: str) -> Step:
    """openloop runs (built by `build_openloop`), pinned to `cpu`, POSTing one hold-out
    row to `variant`."""
    return lambda url, rate, seconds: run_openloop(binary, url, store, variant, rate, seconds, cpu)


def run_k6(
    k6: str, url: str, store: Path, variant: str, rate: float, seconds: float, cpu: str
) -> dict[str, Any]:
    """One k6 constant-arrival-rate run. Dropped: the iterations it could not start on
    time (no free virtual user). Up to 1,000 virtual users: with fewer, a stall of the
    server makes k6 drop arrivals, and fail the step, that the native engine keeps and
    times from their schedule."""
    with tempfile.TemporaryDirectory() as folder:
        body = _body_file(store, Path(folder))
        script = Path(folder, "open.js")
        target = f"{url}/models/{variant}/predict"
        warmup_ms = round(1000 * seconds * WARMUP_SHARE)
        settings = {"rate": round(rate), "seconds": round(seconds), "warmup_ms": warmup_ms}
        script.write_text(K6_SCRIPT.format(body=body, url=target, **settings))
        summary = Path(folder, "summary.json")
        command = ["taskset", "-c", cpu, k6, "run", "--quiet", "--summary-export"]
        command += [str(summary), str(script)]
        subprocess.run(command, check=True, capture_output=True)
        metrics = json.loads(summary.read_text())["metrics"]
    # k6 leaves a trend that got no sample out of its summary: no answer after the
    # warm-up (p99 unknown, so the step cannot hold), or none with `Server-Timing`.
    unknown = {"p(50)": math.nan, "p(99)": math.nan}
    duration = metrics.get("measured", unknown)
    outside = metrics.get("outside", {})
    return {
        "sent_qps": metrics["http_reqs"]["rate"],
        "p50_ms": duration["p(50)"],
        "p99_ms": duration["p(99)"],
        "outside_p50_ms": outside.get("p(50)"),
        "outside_p99_ms": outside.get("p(99)"),
        "dropped": metrics.get("dropped_iterations", {}).get("count", 0),
        "failed": metrics["http_req_failed"]["passes"],
        "late_share": None,
    }


def build_openloop(folder: Path) -> Path:
    """Compile `openloop.c` into `folder` with the system's C compiler."""
    return _compile(OPENLOOP_SOURCE, folder)


def build_instant(folder: Path) -> Path:
    """Compile `instant.c` into `folder` with the system's C compiler."""
    return _compile(INSTANT_SOURCE, folder)


@contextmanager
def running_instant(binary: Path, cpu: str) -> Iterator[str]:
    """The instant server (built by `build_instant`) pinned to `cpu`, on a free loopback
    port; yields its URL and stops it on the way out."""
    command = ["taskset", "-c", cpu, str(binary), "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        words = process.stdout.readline().split()
        if words[:1] != ["listening"]:
            raise RuntimeError(f"{binary.name} did not start (exit code {process.wait()})")
        yield f"http://127.0.0.1:{words[1]}"
    finally:
        process.kill()
        process.wait()


def _compile(source: Path, folder: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MissingTool("--openloop needs a C compiler: apt-get install gcc libc6-dev")
    binary = folder / source.stem
    command = [compiler, "-O2", "-o", str(binary), str(source)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise UsageError(f"--openloop: {compiler} could not build {source.name}: {reason}")
    return binary


def run_openloop(
    binary: Path, url: str, store: Path, variant: str, rate: float, seconds: float, cpu: str
) -> dict[str, Any]:
    """One openloop run at a constant rate. It never drops an arrival: one that finds all
    `MAX_IN_FLIGHT` connections busy waits for the next free one, timed from its
    schedule, as the native engine's do."""
    address = urlsplit(url)
    if address.hostname is None or address.port is None:
        raise ValueError(f"openloop needs a URL with a host address and a port, not {url!r}")
    with tempfile.TemporaryDirectory() as folder:
        body = _body_file(store, Path(folder))
        command = ["taskset", "-c", cpu, str(binary), address.hostname, str(address.port)]
        command += [f"/models/{variant}/predict", str(body), str(rate), str(seconds)]
        command += [str(WARMUP_SHARE), str(MAX_IN_FLIGHT)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    found = json.loads(done.stdout)
    arrivals = max(1, found["answered"] + found["failed"])
    return {
        "sent_qps": found["sent"] / seconds,
        "p50_ms": _measured(found["p50_ms"]),
        "p99_ms": _measured(found["p99_ms"]),
        "outside_p50_ms": _measured(found["outside_p50_ms"], missing=None),
        "outside_p99_ms": _measured(found["outside_p99_ms"], missing=None),
        "dropped": 0,
        "failed": found["failed"],
        "late_share": found["late"] / arrivals,
    }


def _measured(value: float, missing: float | None = math.nan) -> float | None:
    """openloop prints -1 for a percentile of no samples."""
    return missing if value < 0 else value


def _body_file(store: Path, folder: Path) -> Path:
    """One hold-out row as a request body, in a file the generator reads."""
    body = folder / "body.json"
    body.write_text(json.dumps({"instances": [load_holdout(store).features[0].tolist()]}))
    return body

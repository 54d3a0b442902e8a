"""`perfserve bench-http`: what the service costs over HTTP, against the HTTP-stack floor.

In one run, with the servers pinned to one core and wrk pinned to another, it measures
single-row `/predict` requests per second and p50/p99 at each concurrency, for each
variant with batching on and off, and for a bare ASGI app (the floor); with
`--protocols v2` (or `v1`), the same single row through that protocol's route on the
same servers, beside `/predict`. Cells run interleaved (every target once per round,
several rounds) so drift on a shared machine hits all alike; the table reports medians
over rounds and ratios taken within a run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from perfserve.benchmarks.http.competitor_servers import competitor
from perfserve.modelstore.build import build_store
from perfserve_common.processes import running_bare_server, running_server
from perfserve_common.protocols import PROTOCOLS, ProtocolName, predict_path, request_body
from perfserve_common.usage import MissingTool, UsageError, add_option
from service.store import Manifest, StoreError, load_holdout, load_manifest

COMPETITOR_VARIANT = "onnx_int8"
BASELINE = " (baseline)"
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, '
    .. '"p50_us": %.1f, "p99_us": %.1f, "max_us": %.1f}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.max))
end
"""
"""wrk's summary as one JSON line, which `run_wrk` reads (a format string: braces doubled)."""
WRK_SCRIPT = (
    """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""
    + WRK_DONE
)


@dataclass(frozen=True)
class Target:
    """One server configuration under test, and the wrk script that posts its body."""

    name: str
    url: str
    script: Path
    metrics_url: str | None = None
    variant: str | None = None
    pid: int | None = None
    """The server's process, whose CPU time per request the cell reports."""


@dataclass
class Cell:
    """Every round's reading of one target at one concurrency."""

    target: str
    concurrency: int
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    failed: int = 0
    mean_batch: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    """Server CPU time per request: unlike req/s, it holds on a machine busy with other
    work, which takes the server's core away but does not make its requests costlier."""

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def paired_ratio(ours: Cell, theirs: Cell) -> str:
    """`0.91x (0.72 to 1.06)`: the median over rounds of our req/s over theirs in the
    same round, and its range. A round's two cells ran seconds apart, so a host whose
    speed drifts between rounds (the floor moved from 27,000 to 34,000/s within one run)
    moves both alike; a ratio of the two cells' medians may take them from different
    rounds."""
    ratios = [a / b for a, b in zip(ours.rps, theirs.rps, strict=True) if b > 0]
    if not ratios:
        return "-"
    middle = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{middle:.2f}x"
    return f"{middle:.2f}x ({min(ratios):.2f} to {max(ratios):.2f})"


def run_benchmark(
    store: Path,
    out: Path,
    concurrencies: list[int],
    seconds: float,
    rounds: int,
    server_cpu: str,
    client_cpu: str,
    variants: list[str] | None,
    competitors: dict[str, str],
    baseline: Path | None = None,
    protocols: tuple[ProtocolName, ...] = (),
    baseline_env: dict[str, str] | None = None,
) -> list[Cell]:
    wrk, manifest = wrk_and_store(store)
    chosen = variants or list(manifest.variants)
    unknown = [name for name in chosen if name not in manifest.variants]
    if unknown:
        raise UsageError(
            f"--variants {','.join(unknown)}: not in the store {store}; "
            f"it has {', '.join(manifest.variants)}"
        )
    store = store.resolve()  # a baseline server runs in its own checkout
    row = load_holdout(store, manifest).features[0].tolist()
    with ExitStack() as servers:
        scripts = Path(servers.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        body = json.dumps({"instances": [row]}).encode()
        script = write_wrk_script(scripts / "perfserve.lua", body)
        protocol_scripts = {
            protocol: write_wrk_script(
                scripts / f"{protocol}.lua", request_body(protocol, np.asarray([row]))
            )
            for protocol in protocols
        }
        bare = servers.enter_context(running_bare_server(server_cpu))
        floor = Target("bare ASGI floor", f"{bare}/predict", script, pid=serving_child_pid(bare))
        targets = [floor]
        builds: list[tuple[str, Path | None, dict[str, str] | None]] = [("", None, None)]
        if baseline is not None or baseline_env:
            # Another checkout, or this one with other settings (e.g. PERFSERVE_DRIFT=0).
            checkout = None if baseline is None else baseline.resolve()
            builds.append((BASELINE, checkout, baseline_env))
        for batching, size in (("on", "64"), ("off", "1")):
            for suffix, checkout, env in builds:
                server = servers.enter_context(
                    running_server(
                        store,
                        options=["--max-batch-size", size],
                        env=env,
                        cpus=server_cpu,
                        checkout=checkout,
                    )
                )
                targets += [
                    Target(
                        f"{name} batching {batching}{suffix}",
                        f"{server.url}/models/{name}/predict",
                        script,
                        f"{server.url}/metrics",
                        name,
                        server.process.pid,
                    )
                    for name in chosen
                ]
                targets += [
                    Target(
                        f"{name} batching {batching}{suffix} {protocol}",
                        f"{server.url}{predict_path(protocol, name)}",
                        protocol_scripts[protocol],
                        f"{server.url}/metrics",
                        name,
                        server.process.pid,
                    )
                    for protocol in protocols
                    for name in chosen
                ]
        model = store / manifest.variants[COMPETITOR_VARIANT].path
        for name, python in competitors.items():
            rival = servers.enter_context(competitor(name, python, model, row, server_cpu))
            rival_script = write_wrk_script(scripts / f"{name}.lua", rival.body)
            targets.append(Target(f"{name} ({COMPETITOR_VARIANT})", rival.url, rival_script))
        cells = {(t.name, c): Cell(t.name, c) for t in targets for c in concurrencies}
        for target in targets:  # warm every server and connection path once
            run_wrk(wrk, client_cpu, target.script, target.url, 8, 1)
        for round_ in range(rounds):
            for concurrency in concurrencies:
                for target in targets:
                    measure(wrk, client_cpu, target, cells[target.name, concurrency], seconds)
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    results = list(cells.values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-http.json").write_text(json.dumps([asdict(c) for c in results], indent=2))
    report = render(results, concurrencies, chosen)
    (out / "bench-http.md").write_text(report)
    print(report)
    return results


def wrk_and_store(store: Path) -> tuple[str, Manifest]:
    """wrk's path (MissingTool without it) and the store's manifest, built first when
    there is no store."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise MissingTool("wrk is not installed (Debian: apt-get install wrk)")
    try:
        return wrk, load_manifest(store)
    except StoreError:
        return wrk, build_store(store)


def measure(wrk: str, cpu: str, target: Target, cell: Cell, seconds: float) -> None:
    """One wrk run against `target`, its readings appended to `cell`."""
    before = _batch_totals(target)
    cpu_before = _cpu_seconds(target.pid)
    reading = run_wrk(wrk, cpu, target.script, target.url, cell.concurrency, seconds)
    cpu_after = _cpu_seconds(target.pid)
    after = _batch_totals(target)
    if cpu_before is not None and cpu_after is not None and reading["requests"]:
        cell.cpu_us.append((cpu_after - cpu_before) / reading["requests"] * 1e6)
    seconds_run = reading["duration_us"] / 1e6
    cell.rps.append(reading["requests"] / seconds_run)
    cell.p50_ms.append(reading["p50_us"] / 1000)
    cell.p99_ms.append(reading["p99_us"] / 1000)
    cell.failed += int(reading["socket_errors"] + reading["non_2xx"])
    if before and after and after[1] > before[1]:
        cell.mean_batch.append((after[0] - before[0]) / (after[1] - before[1]))


def write_wrk_script(path: Path, body: bytes) -> Path:
    path.write_text(WRK_SCRIPT.format(body=body.decode()))
    return path


def run_wrk(
    wrk: str, cpu: str, script: Path, url: str, concurrency: int, seconds: float
) -> dict[str, float]:
    command = ["taskset", "-c", cpu, wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s"]
    command += ["--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    reading: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return reading


def _cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time of a server process so far."""
    if pid is None:
        return None
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _batch_totals(target: Target) -> tuple[float, float] | None:
    """(rows, batches) executed so far for the target's variant, from `/metrics`."""
    if target.metrics_url is None:
        return None
    totals = {"perfserve_batch_size_sum": 0.0, "perfserve_batch_size_count": 0.0}
    for family in text_string_to_metric_families(httpx.get(target.metrics_url).text):
        for sample in family.samples:
            if sample.name in totals and sample.labels.get("variant") == target.variant:
                totals[sample.name] = sample.value
    return totals["perfserve_batch_size_sum"], totals["perfserve_batch_size_count"]


def serving_child_pid(url: str) -> int | None:
    """The id of this process's child serving on `url`'s port (the floor's uvicorn, which
    `running_bare_server` starts without handing out its process)."""
    port = url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            command = child.cmdline()
            if "--port" in command and command[command.index("--port") + 1 :][:1] == [port]:
                return int(child.pid)
    return None


def render(cells: list[Cell], concurrencies: list[int], variants: list[str]) -> str:
    """A Markdown table of medians, then the ratios the targets are stated in."""
    by_key = {(c.target, c.concurrency): c for c in cells}
    lines = [
        "| target | concurrency | req/s | p50 ms | p99 ms | of floor | server CPU µs/request "
        "| floor's CPU over this | mean batch | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in cells:
        floor = by_key["bare ASGI floor", cell.concurrency]
        share = cell.median(cell.rps) / floor.median(floor.rps)
        batch = f"{cell.median(cell.mean_batch):.1f}" if cell.mean_batch else ""
        cpu = f"{cell.median(cell.cpu_us):.1f}" if cell.cpu_us else ""
        cpu_share = (
            f"{floor.median(floor.cpu_us) / cell.median(cell.cpu_us):.0%}"
            if cell.cpu_us and floor.cpu_us
            else ""
        )
        lines.append(
            f"| {cell.target} | {cell.concurrency} | {cell.median(cell.rps):,.0f} "
            f"| {cell.median(cell.p50_ms):.3f} | {cell.median(cell.p99_ms):.3f} "
            f"| {share:.0%} | {cpu} | {cpu_share} | {batch} | {cell.failed} |"
        )
    lines += [
        "",
        "| variant | concurrency | batching on / off (req/s, median of rounds and range) "
        "| p50 on minus off (ms) |",
    ]
    lines.append("| --- | --- | --- | --- |")
    for variant in variants:
        for concurrency in concurrencies:
            on = by_key[f"{variant} batching on", concurrency]
            off = by_key[f"{variant} batching off", concurrency]
            lines.append(
                f"| {variant} | {concurrency} | {paired_ratio(on, off)} "
                f"| {on.median(on.p50_ms) - off.median(off.p50_ms):+.3f} |"
            )
    lines += _against_baseline(cells, by_key)
    lines += _protocols_against_predict(cells, by_key)
    rivals = sorted({c.target for c in cells if c.target.endswith(f"({COMPETITOR_VARIANT})")})
    if rivals and COMPETITOR_VARIANT in variants:
        lines += ["", "| server | concurrency | perfserve req/s over theirs | their p99 ms |"]
        lines.append("| --- | --- | --- | --- |")
        for rival in rivals:
            for concurrency in concurrencies:
                ours = by_key[f"{COMPETITOR_VARIANT} batching on", concurrency]
                theirs = by_key[rival, concurrency]
                lines.append(
                    f"| {rival} | {concurrency} "
                    f"| {ours.median(ours.rps) / theirs.median(theirs.rps):.1f}x "
                    f"| {theirs.median(theirs.p99_ms):.3f} |"
                )
    return "\n".join(lines) + "\n"


def _against_baseline(cells: list[Cell], by_key: dict[tuple[str, int], Cell]) -> list[str]:
    """This checkout against the baseline's, target by target, within the same rounds."""
    pairs = [
        (cell, by_key[cell.target + BASELINE, cell.concurrency])
        for cell in cells
        if (cell.target + BASELINE, cell.concurrency) in by_key
    ]
    if not pairs:
        return []
    lines = [
        "",
        "| target | concurrency | req/s over baseline (median of rounds and range) "
        "| CPU µs/request, baseline → this "
        "| p99 minus baseline (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for ours, theirs in pairs:
        lines.append(
            f"| {ours.target} | {ours.concurrency} "
            f"| {paired_ratio(ours, theirs)} "
            f"| {theirs.median(theirs.cpu_us):.1f} → {ours.median(ours.cpu_us):.1f} "
            f"| {ours.median(ours.p99_ms) - theirs.median(theirs.p99_ms):+.3f} |"
        )
    return lines


def _protocols_against_predict(cells: list[Cell], by_key: dict[tuple[str, int], Cell]) -> list[str]:
    """Each protocol's route against `/predict` on the same server, in the same rounds."""
    pairs = []
    for cell in cells:
        base, _, protocol = cell.target.rpartition(" ")
        if protocol in PROTOCOLS and (base, cell.concurrency) in by_key:
            pairs.append((cell, by_key[base, cell.concurrency]))
    if not pairs:
        return []
    lines = [
        "",
        "| target | concurrency | req/s over /predict (median of rounds and range) "
        "| p99 minus /predict (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for ours, native in pairs:
        lines.append(
            f"| {ours.target} | {ours.concurrency} "
            f"| {paired_ratio(ours, native)} "
            f"| {ours.median(ours.p99_ms) - native.median(native.p99_ms):+.3f} |"
        )
    return lines


def add_pinned_bench_options(bench: argparse.ArgumentParser, out: Path, client: str) -> None:
    """The store, the results folder and the two CPU lists every HTTP benchmark takes."""
    add_option(
        bench,
        "--store",
        type=Path,
        default=Path("model_store"),
        help="Model store to serve; built there first if it is missing.",
    )
    add_option(bench, "--out", type=Path, default=out, help="Folder for the results.")
    add_cpu_options(bench, client)


def add_cpu_options(
    bench: argparse.ArgumentParser, client: str, old_generator_flag: str = "--client-cpu"
) -> None:
    """`--server-cpus` and `--generator-cpus`, as every pinned benchmark names them;
    `old_generator_flag` is the spelling the command had before (still taken, warned)."""
    add_option(
        bench,
        "--server-cpus",
        renamed_from="--server-cpu",
        default="0",
        help="CPU list to pin the servers to.",
    )
    add_option(
        bench,
        "--generator-cpus",
        renamed_from=old_generator_flag,
        default="1",
        help=f"CPU list to pin {client} to.",
    )

"""`perfserve bench-http --workers 1,2`: what a second worker process buys on the cores
given, and what N workers should hold on paper.

One server per worker count, all pinned to `--server-cpus`, take turns under wrk (pinned
to `--generator-cpus`) round after round, so drift on a shared machine hits them alike.
Each cell records requests/s, p50 and p99, the server's CPU per request (every process
of it: the supervisor and its workers) and wrk's own CPU per request.

The figures on paper come from one worker's CPU per request at the highest concurrency,
and assume what a reader should check before trusting them: every worker costs per
request what one did (no contention for caches, memory bandwidth or the kernel's accept
queue), each worker holds at most one core's worth (its event loop is one thread), the
cores run at one speed, and nothing else runs on them. When wrk shares the server's
cores, every request also pays wrk's cost out of the same CPU, which the ceiling for
these cores counts.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from loadtests.argtypes import cpu_list
from perfserve.benchmarks.http.http_overhead import Cell, run_wrk, write_wrk_script, wrk_and_store
from perfserve_common.processes import running_server
from perfserve_common.usage import UsageError
from service.store import load_holdout

ON_PAPER_WORKERS = (1, 2, 4, 8)


@dataclass
class WorkersCell(Cell):
    """A `Cell` of the server with `workers` processes; its `cpu_us` counts every process
    of the server (the supervisor and its workers)."""

    workers: int = 1
    generator_us: list[float] = field(default_factory=list)
    """wrk's CPU per request."""


def run_workers_benchmark(
    store: Path,
    out: Path,
    workers: list[int],
    concurrencies: list[int],
    seconds: float,
    rounds: int,
    server_cpus: str,
    generator_cpus: str,
    variant: str,
) -> list[WorkersCell]:
    """Measure, write workers.json and workers.md to `out`, print the report."""
    wrk, manifest = wrk_and_store(store)
    if variant not in manifest.variants:
        raise UsageError(f"--variants {variant}: not in the store {store}")
    row = load_holdout(store, manifest).features[0].tolist()
    cells = {
        (n, c): WorkersCell(f"{n} workers", c, workers=n) for n in workers for c in concurrencies
    }
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-workers-")))
        script = write_wrk_script(folder / "predict.lua", json.dumps({"instances": [row]}).encode())
        servers = {
            n: stack.enter_context(
                running_server(store, options=["--workers", str(n)], cpus=server_cpus)
            )
            for n in workers
        }
        urls = {n: f"{server.url}/models/{variant}/predict" for n, server in servers.items()}
        for url in urls.values():  # warm every worker's connections and model
            run_wrk(wrk, generator_cpus, script, url, 16, 1)
        for round_ in range(rounds):
            for concurrency in concurrencies:
                for n, server in servers.items():
                    cell, pid = cells[n, concurrency], server.process.pid
                    _measure(wrk, generator_cpus, script, urls[n], pid, cell, seconds)
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    results = list(cells.values())
    on_server, on_generator = set(cpu_list(server_cpus)), set(cpu_list(generator_cpus))
    shared = bool(on_server & on_generator)
    cores = len(on_server | on_generator) if shared else len(on_server)
    report = render(results, variant, server_cpus, generator_cpus, cores, shared)
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers.json").write_text(json.dumps([asdict(c) for c in results], indent=2))
    (out / "workers.md").write_text(report)
    print(report)
    return results


def _measure(
    wrk: str, cpus: str, script: Path, url: str, pid: int, cell: WorkersCell, seconds: float
) -> None:
    server_before = _tree_cpu_seconds(pid)
    wrk_before = _children_cpu_seconds()
    reading = run_wrk(wrk, cpus, script, url, cell.concurrency, seconds)
    wrk_after = _children_cpu_seconds()
    server_after = _tree_cpu_seconds(pid)
    requests = reading["requests"]
    cell.rps.append(requests / (reading["duration_us"] / 1e6))
    cell.p50_ms.append(reading["p50_us"] / 1000)
    cell.p99_ms.append(reading["p99_us"] / 1000)
    cell.failed += int(reading["socket_errors"] + reading["non_2xx"])
    if requests:
        cell.cpu_us.append((server_after - server_before) / requests * 1e6)
        cell.generator_us.append((wrk_after - wrk_before) / requests * 1e6)


def _tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and every process under it, so far."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a worker that exited between the listing and the reading
            continue
        total += times.user + times.system
    return total


def _children_cpu_seconds() -> float:
    """CPU of this process's children that have exited (each wrk run, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def render(
    cells: list[WorkersCell],
    variant: str,
    server_cpus: str,
    generator_cpus: str,
    cores: int,
    shared: bool,
) -> str:
    """The measured table, then what the CPU per request says N workers should hold."""
    lines = [
        f"# {variant}: workers on CPUs {server_cpus}, wrk on CPUs {generator_cpus}",
        "",
        "| workers | connections | req/s | over 1 worker | p50 ms | p99 ms "
        "| server CPU µs/request | wrk CPU µs/request | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_key = {(c.workers, c.concurrency): c for c in cells}
    for cell in cells:
        one = by_key.get((1, cell.concurrency))
        scaling = f"{cell.median(cell.rps) / one.median(one.rps):.2f}x" if one else ""
        lines.append(
            f"| {cell.workers} | {cell.concurrency} | {cell.median(cell.rps):,.0f} | {scaling} "
            f"| {cell.median(cell.p50_ms):.3f} | {cell.median(cell.p99_ms):.3f} "
            f"| {cell.median(cell.cpu_us):.1f} | {cell.median(cell.generator_us):.1f} "
            f"| {cell.failed} |"
        )
    lines += ["", *on_paper(cells, cores, shared)]
    return "\n".join(lines) + "\n"


def on_paper(cells: list[WorkersCell], cores: int, shared: bool) -> list[str]:
    """Each measured row against what its own CPU per request allows, then what N workers
    should hold each on a core of its own (the module's docstring says what that assumes).

    A row's budget is the smaller of its workers' cores (each worker's event loop is one
    thread) and the cores there are, every request paying the server's cost, and wrk's
    too when wrk shares the cores. CPU per request is taken from each row itself: it is
    not a constant (one worker sharing cores with wrk pays more per request than two)."""
    measured = [c for c in cells if c.median(c.cpu_us) > 0]
    if not measured:
        return ["No CPU per request was measured: nothing to put on paper."]
    lines = [
        "Each row against its own CPU per request:",
        "",
        "| workers | connections | measured req/s | on paper req/s | measured over paper |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cell in measured:
        paper = row_budget(cell, cores, shared)
        lines.append(
            f"| {cell.workers} | {cell.concurrency} | {cell.median(cell.rps):,.0f} "
            f"| {paper:,.0f} | {cell.median(cell.rps) / paper:.0%} |"
        )
    most = max(measured, key=lambda c: (c.workers, c.concurrency))
    server_us = most.median(most.cpu_us)
    lines += [
        "",
        f"Each on a core of its own, the load generator elsewhere, at the {server_us:.1f} µs "
        f"of server CPU per request measured with {most.workers} worker(s) at "
        f"{most.concurrency} connections, N workers should hold about N * 1,000,000 / "
        f"{server_us:.1f} req/s:",
        "",
        "| workers | about req/s |",
        "| --- | --- |",
        *(f"| {n} | {n * 1e6 / server_us:,.0f} |" for n in ON_PAPER_WORKERS),
        "",
        "Assumed: a worker costs per request what it did here, each holds at most one core, "
        "the cores run at one speed and nothing else runs on them; the measured rows are "
        "what to trust. Check it on your machine with `perfserve bench-http --workers 1,2 "
        "--server-cpus 0,1 --generator-cpus 2` (the generator on a core of its own).",
    ]
    return lines


def row_budget(cell: WorkersCell, cores: int, shared: bool) -> float:
    """What one row's CPU per request allows on its cores (see `on_paper`)."""
    server_us, wrk_us = cell.median(cell.cpu_us), cell.median(cell.generator_us)
    per_worker = cell.workers * 1e6 / server_us
    on_cores = cores * 1e6 / (server_us + (wrk_us if shared else 0.0))
    return min(per_worker, on_cores)

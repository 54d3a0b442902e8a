"""The cost of a refusal: server CPU per 503 when a variant's queue is always full,
beside the bare-ASGI floor's per 200 (`perfserve bench-overload`, its third step).

A shed request should cost the server less than serving the cheapest request it can;
when refusing costs as much as serving, overload takes the replica down anyway.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack
from pathlib import Path

import psutil

from perfserve.benchmarks.http.http_overhead import run_wrk, serving_child_pid
from perfserve_common.processes import running_bare_server, running_server


def refusal_costs(
    wrk: str, args: argparse.Namespace, script: Path, variant: str, connections: int
) -> dict[str, float]:
    """Server CPU µs per answer with the queue always full (every answer a 503), beside
    the floor's per 200, medians over rounds. CPU time rather than answers per second:
    it holds on a machine where other work takes turns on the server's core."""
    options = ["--variants", variant, "--max-batch-size", "1", "--max-queue", "1"]
    options += ["--allow-faults", "--inject", f"{variant}:latency-ms=1000"]
    options += ["--inference", "thread"]
    targets: dict[str, tuple[str, int]] = {}
    with ExitStack() as servers:
        bare = servers.enter_context(running_bare_server(args.server_cpus))
        bare_pid = serving_child_pid(bare)
        if bare_pid is None:
            raise RuntimeError("the bare ASGI server's process was not found")
        targets["bare ASGI floor (200)"] = (bare, bare_pid)
        builds = [("this checkout", None)]
        if args.baseline is not None:
            builds.append(("baseline", args.baseline.resolve()))
        for label, checkout in builds:
            server = servers.enter_context(
                running_server(
                    args.store.resolve(), options=options, cpus=args.server_cpus, checkout=checkout
                )
            )
            targets[f"{label} (503)"] = (server.url, server.process.pid)
        costs: dict[str, list[float]] = {label: [] for label in targets}
        for _ in range(args.rounds):
            for label, (base, pid) in targets.items():
                process = psutil.Process(pid)
                before = sum(process.cpu_times()[:2])
                reading = run_wrk(
                    wrk,
                    args.generator_cpus,
                    script,
                    f"{base}/models/{variant}/predict",
                    connections,
                    args.seconds,
                )
                used = sum(process.cpu_times()[:2]) - before
                costs[label].append(used / max(1, reading["requests"]) * 1e6)
    return {label: statistics.median(values) for label, values in costs.items()}

"""What a single-row prediction costs the server in CPU per request, route by route
(`/models/{variant}/predict`, V2's `/v2/models/{variant}/infer`, V1's
`/v1/models/{variant}:predict`), in process: the app driven through its ASGI interface
as gc_cost.py drives it, without uvicorn or sockets, so the routes' own work (path
matching, codec) is all that differs between them.

Each round runs every route in turn, in a rotating order, and reads the process's CPU
time over `--requests` requests from `--concurrency` closed-loop clients. Medians over
the rounds, and the median of each round's ratio to the first route, hold on a machine
busy with other work better than any single reading. `--profile` runs the rounds again
under cProfile and lists the functions whose own time per request differs most between
the first route and each other (cProfile inflates every call alike: read the ranking,
not the microseconds).

    taskset -c 1 python -m perfserve.benchmarks.http.protocol_cost --store model_store \\
        [--protocols perfserve,v2,v1] [--requests 3200] [--rounds 21] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import uvloop

from perfserve.benchmarks.http.gc_cost import VARIANT, App, drive, ready_app
from perfserve_common.protocols import PROTOCOLS, ProtocolName, predict_path, request_body
from service.metrics.process import collector_time
from service.store import load_holdout, load_manifest

PROFILE_ROWS = 20


@dataclass
class Route:
    """One protocol's path and single-row body, and what each round measured."""

    protocol: ProtocolName
    path: str
    body: bytes
    cpu_us: list[float] = field(default_factory=list)
    gc_us: list[float] = field(default_factory=list)
    profile: cProfile.Profile = field(default_factory=cProfile.Profile)


async def measure(store: Path, routes: list[Route], args: argparse.Namespace) -> None:
    """Warm every route, then the timed rounds, then (`--profile`) the profiled ones."""
    async with ready_app(store, args.concurrency) as app:
        for route in routes:
            await _drive(app, route, args.requests // 4, args.concurrency)
        for round_ in range(args.rounds):
            shift = round_ % len(routes)
            for route in routes[shift:] + routes[:shift]:
                gc_time = collector_time()
                collected, cpu = sum(gc_time.seconds), time.process_time()
                await _drive(app, route, args.requests, args.concurrency)
                route.cpu_us.append((time.process_time() - cpu) / args.requests * 1e6)
                route.gc_us.append((sum(gc_time.seconds) - collected) / args.requests * 1e6)
        for _ in range(args.rounds if args.profile else 0):
            for route in routes:
                route.profile.enable()
                await _drive(app, route, args.requests, args.concurrency)
                route.profile.disable()


async def _drive(app: App, route: Route, requests: int, concurrency: int) -> None:
    if failed := await drive(app, route.body, requests, concurrency, route.path):
        raise SystemExit(f"{route.path}: {failed} of {requests} answers were not 200")


def report(routes: list[Route]) -> list[str]:
    """Each route's median CPU per request, and its rounds' median ratio to the first."""
    base = routes[0]
    lines = []
    for route in routes:
        ratios = [now / was for now, was in zip(route.cpu_us, base.cpu_us, strict=True)]
        lines.append(
            f"{route.path:<32} {statistics.median(route.cpu_us):6.1f} µs/request "
            f"(collector {statistics.median(route.gc_us):.1f}), "
            f"{statistics.median(ratios):.3f}x of {base.path}, median of paired rounds"
        )
    return lines


def differences(routes: list[Route], requests: int) -> list[str]:
    """The functions whose own time per request differs most from the first route's."""
    own = []
    for route in routes:
        table = pstats.Stats(route.profile).stats  # type: ignore[attr-defined]
        own.append(
            {
                f"{Path(file).name}:{line}({name})": entry[2] / requests * 1e6
                for (file, line, name), entry in table.items()
            }
        )
    lines = []
    for route, costs in zip(routes[1:], own[1:], strict=True):
        lines.append(f"own µs per request under cProfile, {route.path} against {routes[0].path}:")
        names = sorted(
            set(costs) | set(own[0]), key=lambda n: -abs(costs.get(n, 0) - own[0].get(n, 0))
        )
        for name in names[:PROFILE_ROWS]:
            was, now = own[0].get(name, 0.0), costs.get(name, 0.0)
            lines.append(f"  {now - was:+7.2f}  {was:7.2f} -> {now:7.2f}  {name}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument(
        "--protocols", default=",".join(PROTOCOLS), help="routes; the first is the reference"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3200, help="per route and round")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    protocols = args.protocols.split(",")
    if unknown := [p for p in protocols if p not in PROTOCOLS]:
        parser.error(f"--protocols {','.join(unknown)}: allowed are {', '.join(PROTOCOLS)}")
    row = load_holdout(args.store, load_manifest(args.store)).features[:1]
    routes = [
        Route(name, predict_path(name, VARIANT), request_body(name, row))
        for name in (cast(ProtocolName, p) for p in protocols)
    ]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(measure(args.store, routes, args))
    print(
        f"{args.rounds} rounds of {args.requests} single-row {VARIANT} requests per route, "
        f"{args.concurrency} at once; this process's CPU time"
    )
    print("\n".join(report(routes)))
    if args.profile:
        print("\n".join(differences(routes, args.requests * args.rounds)))


if __name__ == "__main__":
    main()

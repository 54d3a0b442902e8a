"""`perfserve bench-generator`: how much each sweep engine can offer, and what it adds.

In one run, with the server pinned to one core and the generator to another, for each engine
(native, locust): its ceiling against the bare-ASGI floor (the highest constant rate it
offers with under 1% of its sends late by its own doing, loadtests/sweep/ calibration.py),
and one step at `--rate` against a perfserve variant: latency from schedule, the part of it
outside the server's own `Server-Timing` total (what the wire, both HTTP stacks and the
generator add), and the server's CPU per request. With `--k6` or `--openloop`, reference
generators that share no code with the engines
(perfserve/benchmarks/generator/references.py) run the same step, as a reference for what a
generator adds and for the server's CPU per request; `--openloop` adds the wire row too,
openloop against a C server that does no work, the part of "added" that is the machine's
own. With `--knee-slo-ms` too, the native sweep's knee for `--variant` is set beside theirs
(perfserve/benchmarks/generator/knee_check.py); with `--same-rates`, the sweep's step
and openloop's at each rate on one server (perfserve/benchmarks/generator/same_rate.py).
Each engine runs in a process of its own
(Locust patches the process it runs in with gevent); rounds are interleaved and the table
shows medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from perfserve.benchmarks.generator.references import (
    Step,
    k6_step,
    openloop_step,
    run_openloop,
    running_instant,
)
from perfserve_common.processes import running_server
from service.store import load_holdout, load_manifest

CEILING_START_QPS = 500.0
STEP_WINDOW_S = 1.0


def measure_engine(
    engine: str, store: Path, variant: str, rate: float, seconds: float, server_cpu: str
) -> dict[str, Any]:
    """One engine's ceiling and its step at `rate`; runs in the engine's own process."""
    if engine == "locust":
        import locust  # noqa: F401  (gevent's monkey-patching, before the sweep's imports)
    from loadtests.bodies import encode_bodies, holdout_rows
    from loadtests.loadgen_metrics import LoadgenMetrics
    from loadtests.sweep.calibration import calibrate
    from loadtests.sweep.runner import SweepPlan, start_engine
    from loadtests.sweep.steps import StepRunner, StepSettings

    settings = StepSettings(
        step_seconds=seconds, window_seconds=STEP_WINDOW_S, max_step_seconds=seconds,
        arrivals="constant",
    )  # fmt: skip
    plan = SweepPlan("", [variant], [rate], settings, store, engine=engine)  # type: ignore[arg-type]
    bodies = encode_bodies(holdout_rows(store), 1)
    calibration = calibrate(
        lambda url: start_engine(plan, url, LoadgenMetrics()), bodies, server_cpu,
        start_qps=CEILING_START_QPS,
    )  # fmt: skip
    at_ceiling = [p for p in calibration.points if p.rate == calibration.ceiling_qps][-1:]
    with running_server(store, cpus=server_cpu) as server:
        driver = start_engine(plan, server.url, LoadgenMetrics())
        try:
            driver.setup(bodies, 1, variant)
            runner = StepRunner(driver, server.url, variant, [variant], settings, lambda _: None)
            runner.run(rate, extend=False)  # warm connections and caches
            step = runner.run(rate, extend=False)
        finally:
            driver.close()
    return {
        "ceiling_qps": calibration.ceiling_qps,
        "late_share_at_ceiling": at_ceiling[0].own_late_share if at_ceiling else None,
        "cpu_at_ceiling": at_ceiling[0].generator_cpu if at_ceiling else None,
        "sent_qps": step.client.sent_qps,
        "p50_ms": step.client.p50_ms,
        "p99_ms": step.client.p99_ms,
        "outside_p50_ms": step.client.outside_p50_ms,
        "outside_p99_ms": step.client.outside_p99_ms,
        "late_share": step.generator_late_share,
        "generator_cpu": step.generator_cpu,
        "server_us_per_request": 1e6
        * step.server.cpu_cores
        * step.duration_s
        / max(1.0, step.server.requests),
    }


def measure_reference(
    step: Step, store: Path, variant: str, rate: float, seconds: float, server_cpu: str
) -> dict[str, Any]:
    """A reference generator's step at `rate` against a fresh server: its latency and the
    server's CPU per request, read from the server process itself."""
    with running_server(store, cpus=server_cpu) as server:
        process = psutil.Process(server.process.pid)
        before, requests_before = sum(process.cpu_times()[:2]), _served(server.url)
        result = step(server.url, rate, seconds)
        after, requests = sum(process.cpu_times()[:2]), _served(server.url) - requests_before
    result["server_us_per_request"] = 1e6 * (after - before) / max(1.0, requests)
    return result


def measure_wire(
    openloop: Path, instant: Path, store: Path, rate: float, seconds: float, cpus: tuple[str, str]
) -> dict[str, Any]:
    """openloop's step at `rate` against the instant server (no work, a Server-Timing
    total of zero) on the server's core: the loopback path and the wake-ups alone. The
    body is a perfserve request as in the other rows; instant answers any path."""
    server_cpu, generator_cpu = cpus
    with running_instant(instant, server_cpu) as url:
        return run_openloop(openloop, url, store, "wire", rate, seconds, generator_cpu)


def scrape_cost_ms(store: Path, server_cpu: str, scrapes: int = 50) -> float:
    """Server CPU per `/metrics` scrape, once every variant has answered (the sweep's
    gauge sampler pays this on the server's core each time it reads)."""
    row = load_holdout(store).features[0].tolist()
    with running_server(store, cpus=server_cpu) as server, httpx.Client() as client:
        for variant in load_manifest(store).variants:
            for _ in range(20):
                client.post(f"{server.url}/models/{variant}/predict", json={"instances": [row]})
        process = psutil.Process(server.process.pid)
        before = sum(process.cpu_times()[:2])
        for _ in range(scrapes):
            client.get(f"{server.url}/metrics")
        spent: float = sum(process.cpu_times()[:2]) - before
        return 1000 * spent / scrapes


def _served(url: str) -> float:
    """Requests the server answered so far (one scrape, outside the timed run's CPU)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("perfserve_request_duration_seconds_count{")
    )


def run_benchmark(
    args: argparse.Namespace, references: dict[str, Step], wire: tuple[Path, Path] | None
) -> dict[str, list[dict[str, Any]]]:
    """Each engine and reference generator, then the wire (openloop and instant, when
    built), once per round."""
    rows = [*args.engines, *references, *(["wire"] if wire else [])]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for engine in args.engines:
            command = [
                sys.executable,
                "-m",
                "perfserve.benchmarks.generator.generator_bench",
                engine,
            ]
            command += [str(args.store), args.variant, str(args.rate), str(args.seconds)]
            command += [args.server_cpus, args.generator_cpus]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rounds[engine].append(json.loads(done.stdout.splitlines()[-1]))
        for name, step in references.items():
            rounds[name].append(
                measure_reference(
                    step, args.store, args.variant, args.rate, args.seconds, args.server_cpus
                )
            )
        if wire:
            cpus = (args.server_cpus, args.generator_cpus)
            rounds["wire"].append(measure_wire(*wire, args.store, args.rate, args.seconds, cpus))
    return rounds


COLUMNS = (
    ("ceiling_qps", "ceiling/s", "{:,.0f}"),
    ("late_share_at_ceiling", "late@ceil", "{:.2%}"),
    ("cpu_at_ceiling", "cpu@ceil", "{:.2f}"),
    ("sent_qps", "sent/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("outside_p50_ms", "added p50", "{:.3f}"),
    ("outside_p99_ms", "added p99", "{:.3f}"),
    ("late_share", "late", "{:.2%}"),
    ("generator_cpu", "gen cores", "{:.3f}"),
    ("server_us_per_request", "server µs/req", "{:.0f}"),
)


def render(rounds: dict[str, list[dict[str, Any]]], rate: float) -> str:
    lines = [
        f"ceiling: against the bare-ASGI floor; the rest: one step at {rate:,.0f}/s "
        "(added = latency minus the server's Server-Timing total; from the schedule, but "
        "k6 from its send; wire: openloop against a C server that does no work, the "
        "loopback path and wake-ups no generator can take away)",
        f"{'engine':<8}" + "".join(f"{title:>14}" for _, title, _ in COLUMNS),
    ]
    for name, results in rounds.items():
        cells = []
        for key, _, form in COLUMNS:
            values = [r[key] for r in results if r.get(key) is not None]
            cells.append(form.format(statistics.median(values)) if values else "-")
        lines.append(f"{name:<8}" + "".join(f"{cell:>14}" for cell in cells))
    return "\n".join(lines)


def reference_steps(args: argparse.Namespace, openloop: Path | None) -> dict[str, Step]:
    """The reference generators asked for, pinned to the generator CPU."""
    references = {}
    if args.k6:
        references["k6"] = k6_step(args.k6, args.store, args.variant, args.generator_cpus)
    if openloop:
        references["openloop"] = openloop_step(
            openloop, args.store, args.variant, args.generator_cpus
        )
    return references


def main(argv: list[str]) -> None:
    """One engine's measurement, pinned to the generator CPU, as one JSON line."""
    engine, store, variant, rate, seconds, server_cpu, generator_cpu = argv
    os.sched_setaffinity(0, {int(c) for c in generator_cpu.split(",")})
    started = time.monotonic()
    result = measure_engine(engine, Path(store), variant, float(rate), float(seconds), server_cpu)
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])

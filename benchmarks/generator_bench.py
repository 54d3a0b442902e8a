"""`perfserve bench-generator`: how much each sweep engine can offer, and what it adds.

In one run, with the server pinned to one core and the generator to another, for each
engine (native, locust): its ceiling against the bare-ASGI floor (the highest constant
rate it offers with under 1% of its sends late by its own doing, loadtests/sweep/
calibration.py), and one step at `--rate` against a perfserve variant: latency from
schedule, the part of it outside the server's own `Server-Timing` total (what the wire,
both HTTP stacks and the generator add), and the server's CPU per request. With `--k6`,
k6's constant-arrival-rate executor (an open-loop generator we did not write) runs the
same step, as a reference for what a generator adds and for the server's CPU per
request; with `--knee-slo-ms` too, the native sweep's knee for `--variant` is set beside
k6's, found by bisection on the same server (constant arrivals on both sides),
`--knee-rounds` times with medians. Each engine runs in a process of its own (Locust
patches the process it runs in with gevent); rounds are interleaved and the table shows
medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from common.processes import running_server
from common.usage import UsageError, add_option
from loadtests.argtypes import positive_float
from loadtests.engines.base import ENGINES
from loadtests.sweep.knee import climb
from service.store import StoreError, load_holdout, load_manifest

CEILING_START_QPS = 500.0
KNEE_PRECISION = 0.1
KNEE_MAX_RUNS = 14
STEP_WINDOW_S = 1.0
K6_WARMUP_SHARE = 0.25
"""The first quarter of a k6 run is left out of its percentiles, as the sweep leaves out
its first window (a quarter of a step by default): connections opening, the server's
queue filling to its level."""
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
    at_ceiling = [p for p in calibration.points if p.rate == calibration.ceiling_qps]
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


def measure_k6(
    k6: str, store: Path, variant: str, rate: float, seconds: float, cpus: tuple[str, str]
) -> dict[str, Any]:
    """k6 at `rate` against a fresh server: its latency (from send) and the server's CPU
    per request, read from the server process itself."""
    with running_server(store, cpus=cpus[0]) as server:
        process = psutil.Process(server.process.pid)
        before, requests_before = sum(process.cpu_times()[:2]), _served(server.url)
        result = run_k6(k6, server.url, store, variant, rate, seconds, cpus[1])
        after, requests = sum(process.cpu_times()[:2]), _served(server.url) - requests_before
    result["server_us_per_request"] = 1e6 * (after - before) / max(1.0, requests)
    return result


def run_k6(
    k6: str, url: str, store: Path, variant: str, rate: float, seconds: float, cpu: str
) -> dict[str, Any]:
    """One k6 constant-arrival-rate run: achieved rate, p50 and p99 from send after the
    warm-up (`K6_WARMUP_SHARE`), the same less each answer's `Server-Timing` total (what
    k6 and the wire add), and the iterations it could not start on time (no free
    virtual user: dropped). Up to 1,000 virtual users: with fewer, a stall of the server
    makes k6 drop arrivals, and fail the step, that the native engine keeps and times
    from their schedule."""
    row = load_holdout(store).features[0].tolist()
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder, "body.json")
        body.write_text(json.dumps({"instances": [row]}))
        script = Path(folder, "open.js")
        target = f"{url}/models/{variant}/predict"
        warmup_ms = round(1000 * seconds * K6_WARMUP_SHARE)
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
    }


def k6_knee(k6: str, url: str, args: argparse.Namespace, slo_ms: float) -> list[dict[str, Any]]:
    """k6's knee by the sweep's own search rule (doubling, or halving while even the start
    fails, then bisection to 10%): a rate holds when k6 achieved it within 5%, dropped
    nothing, failed nothing and its p99 stayed within the SLO."""

    def at(rate: float) -> dict[str, Any]:
        run = run_k6(k6, url, args.store, args.variant, rate, args.knee_seconds, args.generator_cpu)
        run["rate"] = rate
        run["holds"] = (
            run["sent_qps"] >= 0.95 * rate and not run["dropped"] and not run["failed"]
            and run["p99_ms"] <= slo_ms
        )  # fmt: skip
        print(f"  k6 {rate:,.0f}/s: p99 {run['p99_ms']:.2f} ms, holds {run['holds']}",
              file=sys.stderr, flush=True)  # fmt: skip
        return run

    start, top = args.knee_start_rate, args.knee_max_rate
    return climb(at, lambda r: bool(r["holds"]), start, top, KNEE_PRECISION, KNEE_MAX_RUNS)[1]


def sweep_knee(
    url: str,
    store: Path,
    variant: str,
    *,
    slo_ms: float,
    step_seconds: float,
    start_rate: float,
    generator_cpu: str,
) -> tuple[float | None, str]:
    """`perfserve sweep --auto`'s knee for `variant` on the server at `url` (constant
    arrivals, bisected to 10%), and what limited it."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "perfserve", "sweep", "--url", url]
        command += ["--store", str(store), "--variant", variant, "--out", out]
        command += ["--slo-p99-ms", str(slo_ms), "--arrivals", "constant"]
        command += ["--step-seconds", str(step_seconds), "--precision", str(KNEE_PRECISION)]
        command += ["--start-rate", str(start_rate), "--metrics-port", "0"]
        command += ["--generator-cpus", generator_cpu]
        subprocess.run(command, check=True, capture_output=True)
        found = json.loads(Path(out, "summary.json").read_text())["variants"][variant]
    return found["knee_qps"], found["knee_limited_by"]


def knee_round(args: argparse.Namespace, k6_first: bool) -> tuple[float | None, str, float | None]:
    """One round on a fresh server: the native sweep's knee, what limited it, and k6's
    knee. Which generator goes first alternates between rounds, so a server that warms
    or drifts during a round favours neither."""
    options = []
    if args.knee_max_batch_size is not None:
        options = ["--max-batch-size", str(args.knee_max_batch_size)]
    with running_server(args.store, options=options, cpus=args.server_cpu) as server:
        if k6_first:
            runs = k6_knee(args.k6, server.url, args, args.knee_slo_ms)
        ours, limited_by = sweep_knee(
            server.url,
            args.store,
            args.variant,
            slo_ms=args.knee_slo_ms,
            step_seconds=args.knee_seconds,
            start_rate=args.knee_start_rate,
            generator_cpu=args.generator_cpu,
        )
        if not k6_first:
            runs = k6_knee(args.k6, server.url, args, args.knee_slo_ms)
    theirs = max((r["rate"] for r in runs if r["holds"]), default=None)
    return ours, limited_by, theirs


def compare_knees(args: argparse.Namespace) -> str:
    """The native sweep's knee and k6's, on one server per round, one SLO, constant
    arrivals; with several rounds, the medians too (the knee of one server moves by
    ±20% from run to run, more than the two generators differ within a run)."""
    slo = args.knee_slo_ms
    batch = "" if args.knee_max_batch_size is None else f", max batch {args.knee_max_batch_size}"
    lines = [f"knee of {args.variant}{batch} at p99 <= {slo:g} ms, constant arrivals:"]
    ours_all, theirs_all = [], []
    for number in range(args.knee_rounds):
        ours, limited_by, theirs = knee_round(args, k6_first=number % 2 == 1)
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        line = f"  round {number + 1}: native sweep {ours} (limited by {limited_by}), "
        lines.append(line + f"k6 bisection {theirs}, native / k6 {ratio}")
        print(lines[-1], file=sys.stderr, flush=True)
        if ours and theirs:
            ours_all.append(ours)
            theirs_all.append(theirs)
    if len(ours_all) > 1:
        ours_median, theirs_median = statistics.median(ours_all), statistics.median(theirs_all)
        lines.append(
            f"  medians over {len(ours_all)} rounds: native sweep {ours_median:,.0f}, "
            f"k6 {theirs_median:,.0f}, native / k6 {ours_median / theirs_median:.2f}"
        )
    return "\n".join(lines)


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


def run_benchmark(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in args.engines}
    if args.k6:
        rounds["k6"] = []
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for engine in args.engines:
            command = [sys.executable, "-m", "benchmarks.generator_bench", engine]
            command += [str(args.store), args.variant, str(args.rate), str(args.seconds)]
            command += [args.server_cpu, args.generator_cpu]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rounds[engine].append(json.loads(done.stdout.splitlines()[-1]))
        if args.k6:
            cpus = (args.server_cpu, args.generator_cpu)
            rounds["k6"].append(
                measure_k6(args.k6, args.store, args.variant, args.rate, args.seconds, cpus)
            )
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
        "(added = latency from schedule minus the server's Server-Timing total; k6 times "
        "from send)",
        f"{'engine':<8}" + "".join(f"{title:>14}" for _, title, _ in COLUMNS),
    ]
    for name, results in rounds.items():
        cells = []
        for key, _, form in COLUMNS:
            values = [r[key] for r in results if r.get(key) is not None]
            cells.append(form.format(statistics.median(values)) if values else "-")
        lines.append(f"{name:<8}" + "".join(f"{cell:>14}" for cell in cells))
    return "\n".join(lines)


def add_bench_generator_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = (
        "Each sweep engine's ceiling against the bare ASGI floor and, at --rate against "
        "--variant, the latency it reports and how much of it is outside the server; k6 "
        "beside them with --k6, and a knee cross-check with --knee-slo-ms."
    )
    options: list[tuple[str, dict[str, Any], str]] = [
        ("--store", {"type": Path, "default": Path("model_store")}, "Model store to serve."),
        ("--variant", {"default": "onnx_int8"}, "Variant of the latency step and the knee."),
        ("--rate", {"type": positive_float, "default": 1000.0}, "Latency step rate, req/s."),
        ("--seconds", {"type": positive_float, "default": 6.0}, "Latency step length, s."),
        ("--rounds", {"type": int, "default": 1}, "Interleaved rounds (0: only the knees)."),
        ("--engines", {"nargs": "+", "choices": ENGINES, "default": list(ENGINES)}, "Engines."),
        ("--server-cpu", {"default": "0"}, "CPU list the servers are pinned to."),
        ("--generator-cpu", {"default": "1"}, "CPU list the generators are pinned to."),
        ("--k6", {}, "Path of a k6 binary, to run k6 beside the engines."),
        ("--knee-slo-ms", {"type": positive_float}, "With --k6: compare knees at this SLO."),
        ("--knee-seconds", {"type": positive_float, "default": 8.0}, "Knee step length, s."),
        ("--knee-rounds", {"type": int, "default": 1}, "Knee comparisons, each on a fresh server."),
        ("--knee-start-rate", {"type": positive_float, "default": 1000.0}, "First knee rate."),
        ("--knee-max-rate", {"type": positive_float, "default": 64_000.0}, "Top knee rate."),
        (
            "--knee-max-batch-size",
            {"type": int},
            "The knee server's --max-batch-size (1: unbatched, a knee within k6's reach).",
        ),
    ]
    for name, settings, text in options:
        add_option(bench, name, help=text, **settings)
    bench.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.store)
    except StoreError as error:
        raise UsageError(f"--store: {error} (run `perfserve build` first)") from None
    if args.variant not in manifest.variants:
        raise UsageError(
            f"--variant {args.variant!r}: not in the store; one of {list(manifest.variants)}"
        )
    if args.rounds < 0:
        raise UsageError("--rounds must be >= 0 (0: only the knee comparison)")
    if args.knee_rounds < 1:
        raise UsageError("--knee-rounds must be >= 1")
    if args.knee_slo_ms and not args.k6:
        raise UsageError("--knee-slo-ms needs --k6 (the independent generator)")
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    if args.rounds:
        print(render(run_benchmark(args), args.rate))
        cost = scrape_cost_ms(args.store, args.server_cpu)
        print(f"server CPU per /metrics scrape: {cost:.1f} ms")
    if args.knee_slo_ms:
        print(compare_knees(args))
    print(f"load average after: {os.getloadavg()}")
    return 0


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

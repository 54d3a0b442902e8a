"""What a scraping Prometheus costs served requests: the p99 at 70% of the knee with a
real Prometheus scraping the server's full `/metrics` every 1 s, every 15 s, and not at
all.

One server pinned to `--server-cpus`. Its knee for `--variant` comes first, from the
sweep's own knee search (constant arrivals, p99 <= `--slo-p99-ms`), unless `--knee-qps`
gives it. Then each round offers `--share` of that knee for one step of the sweep's
native engine (constant arrivals, pinned to `--generator-cpus`, latency from each
request's scheduled send time) once per side, the sides' order turning from round to
round. Every side runs a fresh Prometheus with the project's config and rules (the
staging stack's, perfserve/staging/prometheus.py), pinned with the generator: scraping
the server every 1 s or every 15 s, or, for "no scrapes", scraping only itself, so that
its own CPU is on the generator's core on every side and only the server's scrapes
differ. A scraping side waits for Prometheus's first scrape of the server before its
step, and reports how many scrapes fell in the step (a failed one, `up` 0, apart).
The sweep's own small `?name[]=` reads (its gauge sampler, once a second) run on every
side alike. Medians over rounds; each ratio is a scraping side's p99 over no scrapes,
within 10% to pass.

    python -m perfserve.benchmarks.http.scrape_overhead --store model_store --rounds 5 --seconds 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.argtypes import cpu_list, positive_float, positive_int
from perfserve.benchmarks.generator.knee_check import knee_for_a_share, sweep_step
from perfserve.cli.exit_codes import ExitCode
from perfserve.staging.prometheus import running_prometheus
from perfserve_common.json_http import call
from perfserve_common.processes import running_server
from perfserve_common.slo import SLO_P99_MS

SIDES: dict[str, int | None] = {"no scrapes": None, "every 15 s": 15, "every 1 s": 1}
"""Each side's scrape interval in seconds (None: Prometheus scrapes only itself)."""
OWN_INTERVAL = "1s"
"""Prometheus's interval on the side that does not scrape the server."""
JOB = "perfserve"
TOLERANCE = 0.10
"""A scraping side's p99 may exceed the no-scrape side's by this share (issue 28)."""
FIRST_SCRAPE_GRACE_S = 15.0
"""Beyond one interval, how long a scraping side waits for Prometheus's first scrape."""

Reading = dict[str, float]


def run(args: argparse.Namespace) -> tuple[dict[str, list[Reading]], float]:
    """Every round's three steps on one server: each side's readings, and the knee."""
    readings: dict[str, list[Reading]] = {side: [] for side in SIDES}
    with running_server(args.store, cpus=args.server_cpus) as server:
        knee = args.knee_qps or _knee(server.url, args)
        print(f"knee {knee:,.0f}/s; offering {knee * args.share:,.0f}/s", file=sys.stderr)
        for round_ in range(args.rounds):
            for side in _order(round_):
                reading = measure_side(server.url, SIDES[side], knee * args.share, args)
                readings[side].append(reading)
                print(f"round {round_ + 1}, {side}: {_progress(reading)}", file=sys.stderr)
    return readings, knee


def _knee(url: str, args: argparse.Namespace) -> float:
    print("measuring the knee with the sweep (use --knee-qps to skip)", file=sys.stderr)
    knee, limited_by = knee_for_a_share(
        url, args.store, args.variant, slo_ms=args.slo_p99_ms, generator_cpu=args.generator_cpus
    )
    print(f"knee {knee:,.0f}/s (limited by {limited_by})", file=sys.stderr)
    return knee


def _order(round_: int) -> list[str]:
    """The sides turned by one place each round: each goes first as often as the others."""
    sides = list(SIDES)
    turn = round_ % len(sides)
    return sides[turn:] + sides[:turn]


def measure_side(
    url: str, interval_s: int | None, rate: float, args: argparse.Namespace
) -> Reading:
    """One step at `rate` with a fresh Prometheus scraping the server every `interval_s`
    (None: not at all); the step's figures and the scrapes that fell in it."""
    target = url.removeprefix("http://")
    targets = {} if interval_s is None else {JOB: [target]}
    interval = OWN_INTERVAL if interval_s is None else f"{interval_s}s"
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_prometheus(
            targets, Path(workdir), interval, cpus=args.generator_cpus
        ) as prometheus,
    ):
        if interval_s is not None:
            wait_for_first_scrape(prometheus, interval_s + FIRST_SCRAPE_GRACE_S)
        started = time.time()
        reading = sweep_step(url, args.store, args.variant, rate, args.seconds, args.generator_cpus)
        ended = time.time()
        scrapes, failed = (
            (0, 0) if interval_s is None else scrapes_between(prometheus, started, ended)
        )
    return {**reading, "scrapes": scrapes, "failed_scrapes": failed}


def wait_for_first_scrape(prometheus: str, timeout_s: float) -> None:
    """Until Prometheus has scraped the server once: its first scrape comes at an offset
    of up to one interval, and a step that started before it would miss a scrape."""
    deadline = time.monotonic() + timeout_s
    while not _query(prometheus, f'up{{job="{JOB}"}}', time.time()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus did not scrape the server within {timeout_s:g} s")
        time.sleep(0.2)


def scrapes_between(prometheus: str, started: float, ended: float) -> tuple[int, int]:
    """How many scrapes of the server Prometheus made between two times, and how many of
    them failed (`up` is 1 per successful scrape, 0 per failed one)."""
    span = f"[{max(1, round((ended - started) * 1000))}ms]"
    made = _query(prometheus, f'count_over_time(up{{job="{JOB}"}}{span})', ended)
    succeeded = _query(prometheus, f'sum_over_time(up{{job="{JOB}"}}{span})', ended)
    count = int(float(made[0]["value"][1])) if made else 0
    ok = int(float(succeeded[0]["value"][1])) if succeeded else 0
    return count, count - ok


def _query(prometheus: str, expression: str, at: float) -> list[dict[str, Any]]:
    """An instant query's result vector (empty when nothing matched)."""
    parameters = urllib.parse.urlencode({"query": expression, "time": f"{at:.3f}"})
    answer = call("GET", f"{prometheus}/api/v1/query?{parameters}")
    if answer.status != 200:
        raise RuntimeError(f"Prometheus refused {expression!r}: {answer.status} {answer.text}")
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def _progress(reading: Reading) -> str:
    return (
        f"p99 {reading['client_p99']:.2f} ms, {reading['achieved']:,.0f}/s, "
        f"{reading['scrapes']:.0f} scrapes ({reading['failed_scrapes']:.0f} failed)"
    )


def render(readings: dict[str, list[Reading]], knee: float, args: argparse.Namespace) -> str:
    """Each round's three p99s, the medians, and each scraping side over no scrapes."""
    median = {
        side: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for side, rounds in readings.items()
    }
    lines = [
        f"{args.variant}: knee {knee:,.0f}/s, offered {knee * args.share:,.0f}/s "
        f"({args.share:.0%}); medians of {args.rounds} rounds of {args.seconds:g} s steps",
        f"{'':<12}{'p99 ms':>10}{'p99 from send':>15}{'achieved/s':>12}{'failed':>8}{'scrapes':>9}",
    ]
    for side, figures in median.items():
        lines.append(
            f"{side:<12}{figures['client_p99']:>10.2f}{figures['sent_p99']:>15.2f}"
            f"{figures['achieved']:>12,.0f}{figures['failed']:>8.0f}{figures['scrapes']:>9.0f}"
        )
    for round_ in range(args.rounds):
        each = ", ".join(f"{side} {readings[side][round_]['client_p99']:.2f}" for side in SIDES)
        lines.append(f"round {round_ + 1} ({', '.join(_order(round_))} in turn): p99 {each} ms")
    quiet = median["no scrapes"]["client_p99"]
    for side in list(SIDES)[1:]:
        ratio = median[side]["client_p99"] / quiet
        verdict = "within" if ratio <= 1 + TOLERANCE else "beyond"
        lines.append(f"p99 scraped {side} over no scrapes: {ratio:.2f} ({verdict} {TOLERANCE:.0%})")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line (every value checked here: a bad one is one line and exit 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m perfserve.benchmarks.http.scrape_overhead",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--variant", default="onnx_int8", help="the variant the steps ask")
    parser.add_argument("--share", type=_share, default=0.7, help="of the knee, offered")
    parser.add_argument(
        "--knee-qps", type=positive_float, help="the knee (default: measured by the sweep)"
    )
    parser.add_argument("--slo-p99-ms", type=positive_float, default=SLO_P99_MS)
    parser.add_argument("--seconds", type=positive_float, default=30.0, help="per step")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument(
        "--server-cpus", type=_cpus, default="0", help="CPU list the server is pinned to"
    )
    parser.add_argument(
        "--generator-cpus",
        type=_cpus,
        default="1",
        help="CPU list the generator and Prometheus are pinned to",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if shutil.which("prometheus") is None:
        print("prometheus is not installed (Debian: apt-get install prometheus)", file=sys.stderr)
        return ExitCode.ENVIRONMENT
    readings, knee = run(args)
    print(render(readings, knee, args))
    return ExitCode.ANSWERED


def _share(text: str) -> float:
    share = positive_float(text)
    if share > 1:
        raise argparse.ArgumentTypeError(f"must be a share of the knee, at most 1, not {text}")
    return share


def _cpus(text: str) -> str:
    """A taskset CPU list, checked against this machine's; kept as given."""
    cpu_list(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())

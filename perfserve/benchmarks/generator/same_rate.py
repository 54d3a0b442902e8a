"""The sweep's step beside an independent open-loop client's, at the same rate on one server.

The knee is only as good as each step's p99. Here, on one server pinned to its core, each
rate is measured by both sides in turn, alternating which goes first from round to round
so a server that warms or drifts favours neither: one `perfserve sweep --rates R` step
(constant arrivals, a warm-up of a quarter of `seconds` before its measured windows, of
fixed length), and one run of openloop (benchmarks/openloop.c, which shares no code with
the sweep) for `seconds`, its first quarter left out as warm-up. The two p99s agree when
they are within `AGREE_RATIO` of each other or `AGREE_MS`, whichever is wider; when they
do not, the sweep's own counts say which side fell behind: sends late by the
generator's doing, arrivals that waited for a connection (the server's), dropped.

    perfserve bench-generator --openloop --rounds 0 --same-rates 1000,4000,8000 \
        --same-rate-seconds 16 --same-rate-rounds 3 --variant onnx_int8
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfserve.benchmarks.generator.references import WARMUP_SHARE, Step
from perfserve_common.processes import running_server

AGREE_RATIO = 1.5
AGREE_MS = 1.0
WINDOWS = 4
"""Measured windows in the sweep's step: enough for its settling rule to be judged."""


@dataclass(frozen=True)
class SameRate:
    """One rate, one round: both sides' p99 and the sweep's own account of its step."""

    rate: float
    round: int
    sweep_p99_ms: float
    openloop_p99_ms: float
    sweep: dict[str, Any]
    """The sweep's step, as summary.json gives it."""
    openloop_late_share: float

    @property
    def agrees(self) -> bool:
        return _within(self.sweep_p99_ms, self.openloop_p99_ms)

    @property
    def sent_p99_ms(self) -> float:
        """The sweep's p99 timed from its sends rather than from its schedule: what its
        server saw, its own lateness left out."""
        return float(self.sweep.get("sent_p99_ms") or "nan")

    def line(self) -> str:
        step = self.sweep
        verdict = "agree" if self.agrees else f"differ ({self.behind()})"
        return (
            f"  {self.rate:,.0f}/s round {self.round}: sweep p99 {_ms(self.sweep_p99_ms)} "
            f"(from its sends {_ms(self.sent_p99_ms)}; warm-up p99 "
            f"{_ms(step['warmup_p99_ms'])}; {_late_text(step)}, waited for a "
            f"connection {step['blocked']}, dropped {step['dropped']}), openloop p99 "
            f"{_ms(self.openloop_p99_ms)} (late {self.openloop_late_share:.2%}): {verdict}"
        )

    def behind(self) -> str:
        """Which side fell behind, from each side's own counts: only a count on the side
        that read the higher p99 can explain the gap."""
        step = self.sweep
        if self.sweep_p99_ms < self.openloop_p99_ms:
            if self.openloop_late_share > 0.01:
                return "openloop fell behind"
            return (
                "openloop read the higher p99 and counted itself on time: the server was "
                "slower in its turn"
            )
        if step["generator_late_share"] > 0.01 or step["dropped"]:
            return "the sweep's generator fell behind"
        if step["blocked"]:
            return "the sweep's arrivals waited for connections: the server fell behind"
        if _within(self.sent_p99_ms, self.openloop_p99_ms):
            return (
                f"the sweep's own late sends: timed from its sends, its p99 "
                f"({_ms(self.sent_p99_ms)}) agrees"
            )
        return "neither side counted itself late, so neither side's counts explain it"


def _late_text(step: dict[str, Any]) -> str:
    """The step's late sends, by where they fell: its measured windows (the only ones its
    p99 counts), its warm-up, and the tail after it (sent while the step was being
    stopped)."""
    measured, warmup, whole = step["late_sends"], step.get("warmup_late") or 0, step["late"]
    return f"late {measured} measured ({warmup} in the warm-up, {whole - measured - warmup} after)"


def _within(a_ms: float, b_ms: float) -> bool:
    """Two p99s agree: within `AGREE_RATIO` of each other or `AGREE_MS`, whichever is
    wider (False when either is NaN)."""
    high, low = max(a_ms, b_ms), min(a_ms, b_ms)
    return high <= max(AGREE_RATIO * low, low + AGREE_MS)


def sweep_step(url: str, store: Path, variant: str, rate: float, seconds: float, cpu: str) -> Any:
    """One fixed-length sweep step at `rate` (warm-up apart); summary.json's step."""
    warm = seconds * WARMUP_SHARE
    measured = seconds - warm
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "perfserve", "sweep", "--url", url, "--store", str(store)]
        command += ["--variants", variant, "--rates", str(rate), "--out", out, "--rounds", "1"]
        command += ["--arrivals", "constant", "--metrics-port", "0", "--generator-cpus", cpu]
        command += ["--step-seconds", str(measured), "--max-step-seconds", str(measured)]
        command += ["--window-seconds", str(measured / WINDOWS), "--warmup-seconds", str(warm)]
        subprocess.run(command, check=True, capture_output=True)
        summary = json.loads(Path(out, "summary.json").read_text())
    return summary["variants"][variant]["steps"][0]


def same_rates(
    openloop: Step,
    store: Path,
    variant: str,
    rates: list[float],
    *,
    seconds: float,
    rounds: int,
    server_cpu: str,
    generator_cpu: str,
) -> list[SameRate]:
    """Every rate, every round, on one server; both sides in alternating order."""
    found = []
    with running_server(store, cpus=server_cpu) as server:
        for number in range(1, rounds + 1):
            for rate in rates:
                sides: dict[str, Any] = {}
                order = ["sweep", "openloop"] if number % 2 else ["openloop", "sweep"]
                for side in order:
                    if side == "sweep":
                        sides[side] = sweep_step(
                            server.url, store, variant, rate, seconds, generator_cpu
                        )
                    else:
                        sides[side] = openloop(server.url, rate, seconds)
                result = SameRate(
                    rate,
                    number,
                    float(sides["sweep"]["p99_ms"] or "nan"),
                    float(sides["openloop"]["p99_ms"]),
                    sides["sweep"],
                    float(sides["openloop"]["late_share"] or 0.0),
                )
                print(result.line(), file=sys.stderr, flush=True)
                found.append(result)
    return found


def render(results: list[SameRate], variant: str, seconds: float) -> str:
    """Every round's line, then per rate the medians and whether they agree."""
    lines = [
        f"same rate, same server: {variant}, {seconds:g} s per side (a quarter warm-up), "
        f"agreement within {AGREE_RATIO:g}x or {AGREE_MS:g} ms",
        *(r.line() for r in results),
    ]
    for rate in dict.fromkeys(r.rate for r in results):
        at = [r for r in results if r.rate == rate]
        ours = _median([r.sweep_p99_ms for r in at])
        theirs = _median([r.openloop_p99_ms for r in at])
        agreed = sum(r.agrees for r in at)
        ratio = "-" if math.isnan(ours / theirs) else f"{ours / theirs:.2f}"
        lines.append(
            f"  {rate:,.0f}/s medians of {len(at)}: sweep p99 {_ms(ours)}, openloop "
            f"{_ms(theirs)}, ratio {ratio}; agreed in {agreed} of {len(at)}"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    """The median of the p99s measured (a step with no answer in its measured windows has
    none); NaN when none was."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def _ms(value: float | None) -> str:
    """`2.50 ms`, or `none` for a p99 that was not measured."""
    return "none" if value is None or math.isnan(value) else f"{value:.2f} ms"

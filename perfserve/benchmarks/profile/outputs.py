"""What a profile leaves in `--out`, and how `--compare` reads it back.

profile.json            settings, the per-stage table (combined and per repeat), the
                        noise of each stage over the repeats, the load's figures, the
                        profiler's overhead
profile.md              the same table and figures for people (printed on the console)
flamegraph.svg          CPU per request by stack (perfserve/benchmarks/profile/flamegraph.py)
profile.speedscope.json the raw samples, for speedscope and other viewers
stacks.txt              the collapsed stacks, sample counts (what --compare diffs)
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtests.report.profiles import PROFILE_JSON
from perfserve.benchmarks.profile.flamegraph import render
from perfserve.benchmarks.profile.run import ProfileRun, overhead
from perfserve.benchmarks.profile.stacks import (
    Stacks,
    read_weights,
    write_collapsed,
    write_speedscope,
    write_weights,
)
from perfserve.benchmarks.profile.stages import STAGES
from perfserve.benchmarks.profile.table import StageTable, markdown, stack_weights, stage_legend

STACKS = "stacks.txt"
WEIGHTS = "weights.txt"
NOISE_METHOD = (
    "each stage's µs/request in every profiled repeat (steps of the same load, one after "
    "another on the same server); noise = their standard deviation across repeats"
)


def stage_spread(tables: list[StageTable]) -> dict[str, float]:
    """The standard deviation of each stage's µs/request over the repeats."""
    if len(tables) < 2:
        return {stage: float("nan") for stage in STAGES}
    return {stage: statistics.stdev(t.us_per_request[stage] for t in tables) for stage in STAGES}


def summary(run: ProfileRun, conditions: dict[str, Any]) -> dict[str, Any]:
    table = run.table()
    repeats = run.repeat_tables()
    load = {
        key: statistics.median(getattr(f, key) for f in run.profiled)
        for key in ("achieved_qps", "p50_ms", "p99_ms", "batch_size", "queue_ms")
    }
    return {
        "settings": asdict(run.settings),
        "conditions": conditions,
        "table": table.to_json(),
        "repeats": [t.to_json() for t in repeats],
        "noise": {"method": NOISE_METHOD, "stdev_us": stage_spread(repeats)},
        "load": {"median_of_repeats": load, "steps": [asdict(f) for f in run.profiled]},
        "overhead": {
            "method": "each profiled step follows the same step without the profiler; "
            "medians over the repeats",
            "figures": overhead(run),
            "steps_without": [asdict(f) for f in run.plain],
        },
        "sampler": {
            "tool": "py-spy",
            "rate": run.settings.sample_rate,
            "native": run.settings.native,
            "lagged": any(w.lagged for w in run.windows),
        },
    }


def report_text(data: dict[str, Any], table: StageTable) -> str:
    """profile.md: the table, the load's figures and the profiler's overhead."""
    s = data["settings"]
    load = data["load"]["median_of_repeats"]
    spread = data["noise"]["stdev_us"]
    lines = [
        f"# Profile: {s['variant']} at {s['rate']:,.0f}/s",
        "",
        f"Server CPU per request by stage over {s['repeats']} profiled steps of "
        f"{s['seconds'] / s['repeats']:g} s (py-spy at {s['sample_rate']}/s"
        + (", native frames" if s["native"] else "")
        + "; ± is the standard deviation over the repeats).",
        "",
        markdown(table, spread),
        "",
        "## The load in the same windows (median of the repeats)",
        "",
        f"achieved {load['achieved_qps']:,.0f}/s, p50 {load['p50_ms']:.2f} ms, "
        f"p99 {load['p99_ms']:.2f} ms, batch size {load['batch_size']:.2f}, "
        f"queue wait {load['queue_ms']:.3f} ms",
        "",
        "## What the profiler costs (same step without and with it, medians)",
        "",
        "| figure | without | with | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, figure in data["overhead"]["figures"].items():
        ratio = figure["ratio"]
        lines.append(
            f"| {key} | {figure['without']:,.3f} | {figure['with']:,.3f} | "
            + (f"{ratio:.3f} |" if ratio is not None else "- |")
        )
    if data["sampler"]["lagged"]:
        lines += ["", "py-spy fell behind its rate in some window: samples undercount there."]
    lines += ["", "## Stages", "", stage_legend(), ""]
    return "\n".join(lines)


def write(run: ProfileRun, out: Path, conditions: dict[str, Any]) -> str:
    """Write every output; returns profile.md's text."""
    out.mkdir(parents=True, exist_ok=True)
    data = summary(run, conditions)
    table = run.table()
    (out / PROFILE_JSON).write_text(json.dumps(data, indent=2, default=_plain))
    text = report_text(data, table)
    (out / "profile.md").write_text(text)
    stacks: Stacks = Counter()
    for window in run.windows:
        stacks.update(window.stacks)
    write_collapsed(stacks, out / STACKS)
    interval = 1.0 / run.settings.sample_rate
    name = f"{run.settings.variant} at {run.settings.rate:,.0f}/s"
    write_speedscope(stacks, name, interval, out / "profile.speedscope.json")
    title = f"perfserve {name}: server CPU per request ({table.measured_us:.1f} µs measured)"
    weights = stack_weights(run.windows)
    write_weights(weights, out / WEIGHTS)
    render(weights, title, out / "flamegraph.svg")
    return text


def load_profile(folder: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], float]]:
    """A profile's summary and its stacks' weights (µs per request)."""
    data = json.loads((folder / PROFILE_JSON).read_text())
    return data, read_weights(folder / WEIGHTS)


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")

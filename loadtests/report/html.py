"""One self-contained HTML file that answers "how much load does one replica hold at my
SLO?" in its first lines, then shows the evidence: plots, and every step.

No external assets (images are base64 data URIs, styles inline), so the report can be
mailed, attached to a ticket or opened from a CI artifact as it is. It is laid out for a
laptop screen (1366 px): the steps table keeps the columns that decide a verdict, and
the server's side and the theory sit in a second table below it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtests.report.answer import (
    DASH,
    answer,
    conditions_sentence,
    knee_text,
    queue_model_applies,
)
from loadtests.report.headline import headline
from loadtests.report.profiles import find_profiles, profile_commands
from loadtests.sweep.acceptance import StepVerdict

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px;
       padding: 0 1em; color: #222; }
.answer { font-size: 1.25em; margin: 0.3em 0; }
.conditions, .note { color: #444; max-width: 75em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; white-space: normal; }
td.text, th.text { text-align: left; }
tr.holds td { background: #eef8ee; }
tr.fails td { background: #fbeaea; }
tr.fails td.verdict { color: #a00; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
dl.columns { font-size: 13px; color: #444; columns: 2; max-width: 75em; }
dl.columns dt { font-weight: bold; display: inline; }
dl.columns dd { display: inline; margin: 0; }
dl.columns dd::after { content: ""; display: block; margin-bottom: 0.25em; }
"""

# (key in steps[], header, kind, what it means): kind picks the one format of each
# kind of number (see `_cell`).
VERDICT_COLUMNS = (
    ("verdict", "verdict", "text", "holds, or why the step failed: misses-slo (more than 1% "
     "slower than the SLO or failed), server-saturated (fell short of the rate), "
     "generator-bound (the load generator, not the server, fell behind), unstable (never "
     "settled), too-few-answers (under 460 answers, too few for a p99)"),
    ("phase", "phase", "text", "sweep, or stress / recovery / soak when those ran"),
    ("round", "round", "count", "which round of the knee search measured the step; the "
     "variants take turns step by step within a round"),
    ("target_qps", "target /s", "rate", "the rate the generator was asked to offer"),
    ("achieved_qps", "achieved /s", "rate", "answers per second over the measured windows "
     "(the first window is warm-up and left out)"),
    ("p50_ms", "p50 ms", "ms", "median latency, ms, from each request's scheduled send time"),
    ("p99_ms", "p99 ms", "ms", "99th percentile, ms, from scheduled send time: the SLO's figure"),
    ("p999_ms", "p99.9 ms", "ms", "99.9th percentile, ms"),
    ("max_ms", "max ms", "ms", "slowest answer, ms"),
    ("miss_ratio", "> SLO", "share", "requests slower than the SLO or failed; a step holds "
     "at 1% or less"),
    ("shed", "shed", "count", "requests refused with 503 because the server's queue was full"),
    ("errors", "errors", "count", "other failed requests (timeouts, 5xx, connection errors)"),
    ("late", "late", "count", "sends more than 5 ms behind schedule (no free connection, or "
     "a busy generator); still timed from their scheduled time"),
    ("dropped", "dropped", "count", "arrivals never sent before the step ended"),
    ("generator_cpu", "gen cores", "ratio", "CPU of the busiest generator process, in cores; "
     "near 1 it is out of CPU and its timings include its own delays"),
    ("generator_late_share", "gen late", "share", "sends late by the generator's own doing: "
     "late sends less those that waited for a free connection (the server's doing)"),
)  # fmt: skip
SERVER_COLUMNS = (
    ("target_qps", "target /s", "rate", "the step's rate"),
    ("sent_p99_ms", "p99 from send, ms", "ms", "p99 timed from the actual send instead of the "
     "scheduled one: the gap to p99 is time spent waiting to be sent"),
    ("outside_p50_ms", "client - server p50 ms", "ms", "median of each answer's latency "
     "minus the server's own time for it (its Server-Timing header): the wire, both HTTP "
     "stacks and the generator"),
    ("warmup_s", "warm-up s", "ratio", "seconds at the step's rate before its measured "
     "windows (connections opened before the first arrival), left out of every figure "
     "but the counts"),
    ("warmup_p99_ms", "warm-up p99 ms", "ms", "p99 during the warm-up, from scheduled "
     "send time: how far the step's start sat from its steady state"),
    ("late_sends", "measured late", "count", "of the step's late sends, those in its "
     "measured windows (the late column counts the whole step)"),
    ("warmup_late", "warm-up late", "count", "of the step's late sends, those in its "
     "warm-up"),
    ("server_queue_ms", "queue ms", "ms", "mean wait in the server before the model ran, ms"),
    ("predicted_queue_ms", "M/D/c queue ms", "ms", "that wait as the M/D/c queueing model "
     "predicts it from utilization and time per batch (meaningful once the runner is busy)"),
    ("server_infer_ms_per_batch", "infer ms /batch", "ms", "model time per batch, ms"),
    ("server_mean_batch_rows", "rows /batch", "ratio", "mean rows per model call"),
    ("server_utilization", "runner util", "share", "share of the time the model runner "
     "was computing"),
    ("server_cpu_cores", "server cores", "ratio", "the server process's CPU use, in cores"),
    ("core_speed", "core speed", "ratio", "the server's core, idle just before the step, "
     "running a fixed loop, as a share of its fastest in this run: below 1 the machine "
     "itself ran slower (on a virtual machine, its neighbours), and the server with it"),
    ("server_sampled_in_flight", "in flight", "ratio", "requests inside the server, "
     "sampled once a second and averaged"),
    ("server_little_in_flight", "Little in flight", "ratio", "the same by Little's law: "
     "throughput times mean server latency"),
    ("little_disagreement", "Little Δ", "share", "(sampled - Little) / Little: near 0 when "
     "the two agree; far from 0 when the step was not steady or sampling missed bursts; "
     "- when the samples counted too few requests to tell (under 16 in all)"),
)  # fmt: skip
KNEE_NOTE = (
    "The knee is the highest rate that held the SLO, every lower rate holding too. "
    "<b>≥</b> marks a lower bound: the search stopped for a reason other than the server "
    "missing the SLO, so the server may hold more. Limited by: <b>slo</b>, the next rate "
    "missed the SLO or saturated the server (the knee is the server's); <b>generator</b>, "
    "the next rate was generator-bound twice (add generator processes or cores); <b>unstable</b>, "
    "the next rate gave no settled answer twice; <b>max-rate</b>, every rate tried held. "
    "The search runs in rounds of fresh steps, the variants taking turns step by step; the "
    "knee is the median round's, and its interval the range of the rounds' knees (with 3 "
    "rounds, a 75% interval for the median knee whatever the knees' spread; with 5, 94%)."
)
COMPARISON_NOTE = (
    "Each pair's difference is the candidate's knee over the baseline's, minus 1, averaged "
    "over the rounds in log terms (both were measured in the same minutes, so the "
    "machine's drift cancels), with a 95% Student t interval widened by how finely the "
    "bisection pins each knee down. A verdict needs the whole interval on one side of "
    "zero and at least two rounds; otherwise the two hold the same load within the run's "
    "resolution and are not ranked."
)


def write_html(summary: dict[str, Any], plots: Mapping[str, Path], path: Path) -> None:
    """report.html from summary.json's contents and the plots' files."""
    slo = summary["slo_p99_ms"]
    variants = summary["variants"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>perfserve sweep: load per replica at p99 ≤ {slo:g} ms</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>How much load does one replica hold at p99 ≤ {slo:g} ms?</h1>",
        *(f"<p class='answer'>{html.escape(line)}</p>" for line in headline(summary)),
        "<p class='conditions'>"
        + html.escape(conditions_sentence(summary["conditions"], summary["settings"]))
        + " Latency is timed from each request's scheduled send time (open-loop arrivals), "
        "so waiting in front of a stalled server counts.</p>",
        "<h2>Knee per variant</h2>",
        *_unsupported(summary),
        _knee_table(variants),
        f"<p class='note'>{KNEE_NOTE}</p>",
        *_comparison_section(summary.get("comparisons", [])),
        *_figures(summary, plots),
        *_profiles_section(summary, path.parent),
    ]
    for target, rows in variants.items():
        steps = rows["steps"] + _extra_steps(rows)
        parts.append(f"<h2>{html.escape(target)}: every step</h2>")
        parts.append(_table(steps, VERDICT_COLUMNS))
        parts.append(f"<h3>{html.escape(target)}: the server's side and the theory</h3>")
        parts.append(_table(steps, SERVER_COLUMNS))
        if "stress" in rows:
            parts.append(_stress_section(rows["stress"]))
        if "soak" in rows:
            soak = rows["soak"]
            parts.append(
                f"<p>Soak: server RSS {_cell(soak['rss_start_mb'], 'ratio')} → "
                f"{_cell(soak['rss_end_mb'], 'ratio')} MiB, trend "
                f"{_cell(soak['rss_slope_mb_per_hour'], 'ratio')} MiB/hour.</p>"
            )
    parts += [
        "<h2>What the columns mean</h2>",
        _glossary(VERDICT_COLUMNS + SERVER_COLUMNS[1:]),
        "<p class='note'>A step holds when at most 1% of its requests were slower than the "
        "SLO or failed, nothing was dropped, it achieved its target within 5%, and its "
        "throughput and p99 settled. Late and dropped are counted over the whole step; the "
        "verdict weighs those of its measured windows only. Rates and counts are whole "
        "numbers, times in ms with two decimals, shares in percent.</p>",
        "<details><summary>Settings (to reproduce the run)</summary><pre>"
        + html.escape(json.dumps(summary["settings"], indent=2))
        + "</pre></details></body></html>",
    ]
    path.write_text("\n".join(parts))


def _figures(summary: dict[str, Any], plots: Mapping[str, Path]) -> list[str]:
    """Each plot under a heading, with a caption that says how to read it."""
    slo = summary["slo_p99_ms"]
    captions = {
        "latency": (
            "Latency against load",
            "Percentiles against the rate offered, all variants on one scale; a rate "
            "measured in several rounds (or retried) is the median of its steps. "
            f"The red line is the SLO (p99 ≤ {slo:g} ms); the green line marks the knee, "
            "the green band its interval over the rounds. Grey crosses are generator-bound "
            "steps, which measure the generator.",
        ),
        "throughput": (
            "Throughput and what went wrong",
            "Top: per rate offered, the share of it achieved, the median of its steps (green: "
            "every step at that rate held, orange: some did, red: none; the dashed line is "
            "the 95% a step must reach). Bottom: per rate, the median share of "
            "requests slower than the SLO or failed, shed by the server, errors, arrivals "
            "that waited for a connection (every one busy: the server's doing), sends late "
            "by the generator's own doing and arrivals it dropped: which side gave way first.",
        ),
        "queueing": (
            "Waiting in the server",
            _queueing_caption(summary["variants"]),
        ),
        "stress": ("Overload and recovery", "p99 per window through overload, then recovery."),
        "soak": ("Soak", "The server's resident memory over the soak."),
    }
    parts = []
    for name, plot in plots.items():
        title, caption = captions[name]
        parts += [f"<h2>{title}</h2>", f"<p class='note'>{html.escape(caption)}</p>"]
        parts.append(_image(plot))
    return parts


def _profiles_section(summary: dict[str, Any], report_dir: Path) -> list[str]:
    """Links to the profiles of the sweep's variants, and the commands that make them."""
    links = find_profiles(report_dir, list(summary["variants"]))
    commands = profile_commands(summary, report_dir)
    if not links and not commands:
        return []
    parts = [
        "<h2>Where the time goes</h2>",
        "<p class='note'>A knee says how much load one replica holds; a profile under "
        "load (<code>perfserve profile</code>) says what its CPU was spent on: server CPU "
        "per request by stage, with a flame graph (docs/PROFILING.md).</p>",
    ]
    if links:
        rows = "".join(
            f"<tr><td>{html.escape(link.variant)}</td><td>{link.rate:,.0f}</td>"
            f"<td>{link.us_per_request:,.1f}</td><td>{html.escape(link.top_stage)}</td>"
            f"<td><a href='{link.folder}/profile.md'>table</a> · "
            f"<a href='{link.folder}/flamegraph.svg'>flame graph</a></td></tr>"
            for link in links
        )
        parts.append(
            "<table><tr><th>variant</th><th>rate (req/s)</th><th>server CPU (µs/request)"
            f"</th><th>largest stage</th><th>profile</th></tr>{rows}</table>"
        )
    if commands:
        parts.append(
            "<p class='note'>To profile each variant at 50% and 90% of its knee:</p><pre>"
            + html.escape("\n".join(commands))
            + "</pre>"
        )
    return parts


def _queueing_caption(variants: dict[str, Any]) -> str:
    left_out = [
        name
        for name, target in variants.items()
        if not queue_model_applies([_number(s["server_utilization"]) for s in target["steps"]])
    ]
    text = (
        "Mean wait in the server before the model ran, against how busy the model runner "
        "was. The M/D/c line is what queueing theory predicts for a runner with that "
        "utilization and time per batch: where they agree, the runner is the bottleneck."
    )
    if left_out:
        text += (
            f" Left out for {', '.join(left_out)}: the runner was busy under 30% of the "
            "time at every step, so requests waited for the event loop (parsing, batching, "
            "answering), not for the model, and the model does not apply."
        )
    return text


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<div><img alt='{path.stem}' src='data:image/png;base64,{data}'></div>"


def _knee_table(variants: dict[str, Any]) -> str:
    rows = []
    for name, t in variants.items():
        knee = knee_text(t["knee_qps"], t["knee_is_lower_bound"])
        rows.append(
            f"<tr><td class='text'>{html.escape(name)}</td><td><b>{knee}</b></td>"
            f"<td>{_interval(t)}</td><td>{t.get('knee_rounds', 1)}</td>"
            f"<td class='text'>{_knee_kind(t)}</td>"
            f"<td class='text'>{t['knee_limited_by']}</td>"
            f"<td>{_cell(t.get('knee_p50_ms'), 'ms')}</td>"
            f"<td>{_cell(t.get('knee_p99_ms'), 'ms')}</td>"
            f"<td>{len(t['steps'])}</td></tr>"
        )
    return (
        "<table><tr><th class='text'>variant</th><th>knee, req/s</th><th>interval, req/s</th>"
        "<th>rounds</th><th class='text'>knee is</th><th class='text'>limited by</th>"
        "<th>p50 at knee, ms</th>"
        "<th>p99 at knee, ms</th><th>steps</th></tr>" + "".join(rows) + "</table>"
    )


def _unsupported(summary: dict[str, Any]) -> list[str]:
    """For a run that is not conclusive: what each variant measured, said as such."""
    if summary.get("conclusive", True):
        return []
    slo = summary["slo_p99_ms"]
    lines = [html.escape(answer(n, t, slo)) for n, t in summary["variants"].items()]
    return [
        "<p class='note'><b>Not conclusive:</b> what was measured, which this run's machine "
        "cannot support as an answer:</p><ul class='note'>"
        + "".join(f"<li>{line}</li>" for line in lines)
        + "</ul>"
    ]


def _comparison_section(comparisons: list[dict[str, Any]]) -> list[str]:
    if not comparisons:
        return []
    rows = "".join(
        f"<tr><td class='text'>{html.escape(c['baseline'])}</td>"
        f"<td class='text'>{html.escape(c['candidate'])}</td>"
        f"<td>{_signed(c['difference'])}</td>"
        f"<td>{_signed(c['ci_low'])} {DASH} {_signed(c['ci_high'])}</td>"
        f"<td class='text'><b>{html.escape(str(c['verdict']))}</b></td><td>{c['rounds']}</td></tr>"
        for c in comparisons
    )
    return [
        "<h2>Variants compared under load</h2>",
        "<table><tr><th class='text'>baseline</th><th class='text'>candidate</th>"
        "<th>knee difference</th><th>95% interval</th><th class='text'>verdict</th>"
        f"<th>rounds</th></tr>{rows}</table>",
        f"<p class='note'>{COMPARISON_NOTE}</p>",
    ]


def _signed(value: float | None) -> str:
    return "unbounded" if value is None else f"{100 * value:+.1f}%"


def _interval(target: dict[str, Any]) -> str:
    if target["knee_qps"] is None or not target.get("knee_rounds"):
        return "-"
    low, high = target["knee_low_qps"] or 0, target["knee_high_qps"]
    return f"{low:,.0f} {DASH} {'unbounded' if high is None else f'{high:,.0f}'}"


def _knee_kind(target: dict[str, Any]) -> str:
    if target["knee_qps"] is None:
        return "-"
    return "lower bound" if target["knee_is_lower_bound"] else "the server's limit"


def _extra_steps(target: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    if "stress" in target:
        steps += target["stress"]["steps"]
        steps += [target["stress"]["recovery"]] if target["stress"]["recovery"] else []
    if "soak" in target:
        steps.append(target["soak"]["step"])
    return steps


def _table(steps: list[dict[str, Any]], columns: tuple[tuple[str, str, str, str], ...]) -> str:
    head = "".join(
        f"<th class='{'text' if kind == 'text' else ''}' title='{html.escape(meaning)}'>"
        f"{html.escape(label)}</th>"
        for _, label, kind, meaning in columns
    )
    body = []
    for step in steps:
        cells = "".join(
            f"<td class='{key if kind == 'text' else ''} {'text' if kind == 'text' else ''}'>"
            f"{_verdict_mark(step) if key == 'verdict' else ''}{_cell(step.get(key), kind)}</td>"
            for key, _, kind, _ in columns
        )
        css = "holds" if step["verdict"] == StepVerdict.HOLDS else "fails"
        body.append(f"<tr class='{css}'>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _verdict_mark(step: dict[str, Any]) -> str:
    return "✓ " if step["verdict"] == StepVerdict.HOLDS else "✗ "


def _glossary(columns: tuple[tuple[str, str, str, str], ...]) -> str:
    items = "".join(
        f"<dt>{html.escape(label)}</dt> <dd>{html.escape(meaning)}</dd>"
        for _, label, _, meaning in columns
    )
    return f"<dl class='columns'>{items}</dl>"


def _stress_section(stress: dict[str, Any]) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(v, 'ratio')}</td>" for v in d.values()) + "</tr>"
        for d in stress["degradation"]
    )
    head = "".join(f"<th>{k}</th>" for k in (stress["degradation"] or [{}])[0])
    recovery = stress["recovery_s"]
    recovered = f"{recovery:.1f} s" if recovery is not None else "not within the recovery step"
    return (
        f"<h3>Stress</h3><p>Breaking point: {_cell(stress['breaking_qps'], 'rate')} req/s. "
        f"After dropping to half the knee, p99 was back under the SLO after {recovered}.</p>"
        f"<table><tr>{head}</tr>{rows}</table>"
    )


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _cell(value: Any, kind: str) -> str:
    """One format per kind of number: rates and counts whole, ms with two decimals,
    shares in percent, other ratios with two decimals; '-' when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "text":
        return html.escape(str(value))
    number = float(value)
    if kind in ("rate", "count"):
        return f"{number:,.0f}"
    if kind == "share":
        return f"{100 * number:,.1f}%"
    return f"{number:,.2f}"

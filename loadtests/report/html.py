"""One self-contained HTML file: the knee per target, every step, the plots inlined.

No external assets (images are base64 data URIs, styles inline), so the report can be
mailed, attached to a ticket or opened from a CI artifact as it is.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.sweep.runner import SweepReport

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; }
tr.holds td { background: #eef8ee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; max-width: 60em; }
"""

STEP_COLUMNS = (
    ("phase", "phase"), ("target_qps", "target/s"), ("achieved_qps", "achieved/s"),
    ("p50_ms", "p50"), ("p90_ms", "p90"), ("p95_ms", "p95"), ("p99_ms", "p99"),
    ("p999_ms", "p99.9"), ("max_ms", "max"), ("sent_p99_ms", "p99 from send"),
    ("outside_p50_ms", "client - server p50"),
    ("shed", "shed"), ("errors", "errors"), ("late", "late"), ("dropped", "dropped"),
    ("server_queue_ms", "queue ms"), ("predicted_queue_ms", "M/D/c queue ms"),
    ("server_infer_ms_per_batch", "infer ms/batch"), ("server_mean_batch_rows", "batch"),
    ("server_utilization", "runner util"), ("server_cpu_cores", "server cores"),
    ("server_sampled_in_flight", "in-flight"), ("little_disagreement", "Little Δ"),
    ("generator_cpu", "gen cores"), ("verdict", "verdict"),
)  # fmt: skip


def write_html(
    report: SweepReport, summary: dict[str, Any], plots: Sequence[Path], path: Path
) -> None:
    slo = report.plan.steps.slo_p99_ms
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>perfserve sweep</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>perfserve sweep of {html.escape(report.plan.url)}</h1>",
        f"<p class='note'>p99 SLO {slo:g} ms. Latency is measured from each request's "
        "scheduled send time (open-loop arrivals), so queueing in front of a stalled server "
        "is counted; 'p99 from send' is the same answers timed from the actual send. A step "
        "holds when at most 1% of its requests were slower than the SLO or failed, nothing "
        "was dropped, and it achieved its target within 5%. Latencies in ms.</p>",
        "<h2>Knee per target</h2>",
        _knee_table(summary),
        "<p class='note'>Limited by: <b>slo</b>, the next rate missed the SLO or saturated "
        "the server; <b>generator</b>, the next rate was generator-bound (the load generator "
        "could not send on schedule or read answers in time while the server was not "
        "saturated), so the knee is only a lower bound: add generator workers or cores; "
        "<b>unstable</b>, the next rate gave no settled answer twice; <b>max-rate</b>, every "
        "rate tried held. Late and dropped arrivals are counted over the whole step; the "
        "verdict weighs those of its measured windows only.</p>",
        *(_image(p) for p in plots),
    ]
    for target in summary["variants"]:
        rows = summary["variants"][target]
        parts.append(f"<h2>{html.escape(target)}: steps</h2>")
        parts.append(_steps_table(rows["steps"] + _extra_steps(rows)))
        if "stress" in rows:
            parts.append(_stress_section(rows["stress"]))
        if "soak" in rows:
            soak = rows["soak"]
            parts.append(
                f"<p>Soak: server RSS {soak['rss_start_mb']} → {soak['rss_end_mb']} MiB, "
                f"trend {soak['rss_slope_mb_per_hour']} MiB/hour.</p>"
            )
    parts.append(
        "<h2>Settings</h2><pre>"
        + html.escape(json.dumps(summary["settings"], indent=2))
        + "</pre></body></html>"
    )
    path.write_text("\n".join(parts))


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<div><img alt='{path.stem}' src='data:image/png;base64,{data}'></div>"


def _knee_table(summary: dict[str, Any]) -> str:
    rows = [
        f"<tr><td class='text'>{html.escape(name)}</td><td>{_cell(t['knee_qps'])}</td>"
        f"<td class='text'>{t['knee_limited_by']}</td><td>{len(t['steps'])}</td></tr>"
        for name, t in summary["variants"].items()
    ]
    return (
        "<table><tr><th class='text'>target</th><th>knee QPS</th>"
        "<th class='text'>limited by</th><th>steps</th></tr>" + "".join(rows) + "</table>"
    )


def _extra_steps(target: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    if "stress" in target:
        steps += target["stress"]["steps"]
        steps += [target["stress"]["recovery"]] if target["stress"]["recovery"] else []
    if "soak" in target:
        steps.append(target["soak"]["step"])
    return steps


def _steps_table(steps: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in STEP_COLUMNS)
    body = []
    for step in steps:
        cells = "".join(f"<td>{_cell(step.get(key))}</td>" for key, _ in STEP_COLUMNS)
        css = " class='holds'" if step["verdict"] == "holds" else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _stress_section(stress: dict[str, Any]) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in d.values()) + "</tr>"
        for d in stress["degradation"]
    )
    head = "".join(f"<th>{k}</th>" for k in (stress["degradation"] or [{}])[0])
    recovery = stress["recovery_s"]
    recovered = f"{recovery:.1f} s" if recovery is not None else "not within the recovery step"
    return (
        f"<h3>Stress</h3><p>Breaking point: {_cell(stress['breaking_qps'])} QPS. "
        f"After dropping to half the knee, p99 was back under the SLO after {recovered}.</p>"
        f"<table><tr>{head}</tr>{rows}</table>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return html.escape(str(value))

"""The load `perfserve bench-overload` offers, by k6 or by h2load, read into one shape.

Three phases: `before` at half the capacity, `overload` at `--factor` times it, `after`
at half again. Either generator's run comes back as the figures of a k6 summary, keyed
`outcome{phase:P,kind:K}` (counts) and `latency_ms{...}` (p99), plus
`dropped_iterations`, so the benchmark reads both alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

KINDS = ("ok", "refused", "refused_without_retry_after", "other_5xx", "connection_error", "other")
PHASES = ("before", "overload", "after")
GENERATORS = ("k6", "h2load")
QUIET_VUS = 64
K6_SCRIPT = """
import http from "k6/http";
import exec from "k6/execution";
import {{ Counter, Trend }} from "k6/metrics";

const params = {{ headers: {{ "Content-Type": "application/json" }}, timeout: "30s" }};
const body = {body};
const outcome = new Counter("outcome");
const latency = new Trend("latency_ms", true);

function phase(rate, seconds, start, vus) {{
  return {{
    executor: "constant-arrival-rate", exec: "post", rate: rate, timeUnit: "1s",
    duration: `${{seconds}}s`, startTime: `${{start}}s`, preAllocatedVUs: vus, maxVUs: vus,
  }};
}}

export const options = {{
  discardResponseBodies: true,
  summaryTrendStats: ["p(50)", "p(99)", "max", "count"],
  scenarios: {{
    before: phase({low}, {quiet_s}, 0, {quiet_vus}),
    overload: phase({high}, {overload_s}, {quiet_s}, {vus}),
    after: phase({low}, {after_s}, {quiet_s} + {overload_s}, {quiet_vus}),
  }},
  thresholds: {thresholds},
}};

export function post() {{
  const started = Date.now();
  const r = http.post("{url}", body, params);
  const name = exec.scenario.name;
  let kind = "other";
  if (r.status === 200) kind = "ok";
  else if (r.status === 503 && r.headers["Retry-After"]) kind = "refused";
  else if (r.status === 503) kind = "refused_without_retry_after";
  else if (r.status === 0) kind = "connection_error";
  else if (r.status >= 500) kind = "other_5xx";
  const since = Math.floor((started - exec.scenario.startTime) / 1000);
  const second = name === "after" ? String(since) : "-";
  outcome.add(1, {{ phase: name, kind: kind }});
  latency.add(r.timings.duration, {{ phase: name, second: second }});
}}

export function handleSummary(data) {{
  return {{ "{summary}": JSON.stringify(data.metrics) }};
}}
"""


def offer_with_k6(
    k6: str, args: argparse.Namespace, work: Path, url: str, body: str, capacity: float
) -> dict[str, dict[str, float]]:
    thresholds = {
        f"outcome{{phase:{phase},kind:{kind}}}": ["count>=0"] for phase in PHASES for kind in KINDS
    }
    thresholds["latency_ms{phase:before}"] = ["p(99)>=0"]
    for second in range(args.after_seconds):
        thresholds[f"latency_ms{{phase:after,second:{second}}}"] = ["p(99)>=0"]
    summary = work / "k6-summary.json"
    script = work / "overload.js"
    script.write_text(
        K6_SCRIPT.format(
            body=json.dumps(body),
            url=url,
            low=max(1, round(capacity / 2)),
            high=round(capacity * args.factor),
            quiet_s=args.quiet_seconds,
            overload_s=args.overload_seconds,
            after_s=args.after_seconds,
            vus=args.vus,
            quiet_vus=QUIET_VUS,
            thresholds=json.dumps(thresholds),
            summary=summary,
        )
    )
    command = [
        "taskset",
        "-c",
        args.generator_cpus,
        k6,
        "run",
        "--quiet",
        "--no-color",
        str(script),
    ]
    subprocess.run(command, check=True, capture_output=True)
    metrics: dict[str, dict[str, float]] = {
        key: value["values"] for key, value in json.loads(summary.read_text()).items()
    }
    return metrics


def offer_with_h2load(
    h2load: str, args: argparse.Namespace, work: Path, url: str, body: str, capacity: float
) -> dict[str, dict[str, float]]:
    """The three phases as three h2load runs, back to back, read from h2load's per-request
    log into the same figures the k6 script reports (503s all counted as `refused`:
    h2load does not show headers)."""
    body_file = work / "body.json"
    body_file.write_text(body)
    low, high = capacity / 2, capacity * args.factor
    phases = [
        ("before", QUIET_VUS, low, args.quiet_seconds),
        ("overload", args.vus, high, args.overload_seconds),
        ("after", QUIET_VUS, low, args.after_seconds),
    ]
    metrics: dict[str, dict[str, float]] = {"dropped_iterations": {"count": 0}}
    for phase, connections, rate, seconds in phases:
        log = work / f"h2load-{phase}.tsv"
        log.unlink(missing_ok=True)  # h2load appends to an existing log
        command = ["taskset", "-c", args.generator_cpus, h2load, "--h1", "-c", str(connections)]
        command += ["--rps", f"{rate / connections:.4f}", "-D", str(seconds)]
        command += ["-d", str(body_file), "-H", "content-type: application/json"]
        command += ["--log-file", str(log), url]
        subprocess.run(command, check=True, capture_output=True)
        answers = np.loadtxt(log, ndmin=2).reshape(-1, 3)
        started_us, status, took_ms = answers[:, 0], answers[:, 1], answers[:, 2] / 1000
        metrics["dropped_iterations"]["count"] += max(0, round(rate * seconds) - len(answers))
        for kind, mask in _h2load_kinds(status).items():
            metrics[f"outcome{{phase:{phase},kind:{kind}}}"] = {"count": int(mask.sum())}
        if phase == "before":
            metrics["latency_ms{phase:before}"] = {"p(99)": _p99(took_ms)}
        elif phase == "after" and len(answers):
            second = (started_us - started_us.min()) // 1e6
            for index in range(seconds):
                in_second = took_ms[second == index]
                if len(in_second):
                    metrics[f"latency_ms{{phase:after,second:{index}}}"] = {
                        "p(99)": _p99(in_second)
                    }
    return metrics


def _h2load_kinds(status: np.ndarray) -> dict[str, np.ndarray]:
    """Each answer's kind from its status alone (-1: the stream failed, no answer)."""
    return {
        "ok": status == 200,
        "refused": status == 503,
        "connection_error": status < 0,
        "other_5xx": (status >= 500) & (status != 503),
        "other": (status >= 0) & (status != 200) & (status < 500),
    }


def _p99(values: np.ndarray) -> float:
    return float(np.percentile(values, 99, method="inverted_cdf")) if len(values) else float("nan")

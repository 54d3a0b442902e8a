"""What a running rollout costs served requests: the p99 at 70% of the knee, with a
rollout collecting evidence and without one.

One server pinned to `--server-cpus`, following a split file as a replica does, with
the admin token. Its knee through the live split comes first, from the sweep's own knee
search (constant arrivals, p99 <= `--slo-p99-ms`). Then each round offers `--share` of
that knee for one step of the sweep's native engine (constant arrivals, pinned to
`--generator-cpus`, latency from each request's scheduled send time) twice, in an order
that alternates between rounds: with no rollout (the baseline serves everything), and
with a rollout at its first step (the candidate at `--step`% and shadowing the baseline,
every routed answer recorded as evidence, the controller reading the evidence every
tick). The rollout is started a second before its step (once its first split is
served) and aborted after it; a step whose
rollout had left its first step by the end is reported, not counted. Medians over
rounds; the ratio is with over without.

    python -m perfserve.benchmarks.judge.rollout_overhead --store model_store --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from perfserve.benchmarks.generator.knee_check import knee_for_a_share, sweep_step
from perfserve_common.json_http import call
from perfserve_common.processes import running_server
from perfserve_common.slo import SLO_P99_MS

TOKEN = "rollout-overhead-bench-token"
SIDES = ("no rollout", "rollout")
SETTLE_S = 1.0
"""After the rollout's first split reaches the server and before the step: the figures
are those of a rollout collecting evidence, not of its start."""


def start_rollout(url: str, args: argparse.Namespace) -> None:
    plan = {
        "baseline": args.baseline,
        "candidate": args.candidate,
        "steps": [args.step, 100],
        "window_seconds": 3600,  # the step ends long before the first window could
        "policy": {"family_alpha": 1e-6},  # needs far more samples than a step brings
    }
    answer = call("POST", f"{url}/rollout/start", plan, _admin())
    if answer.status != 202:
        raise RuntimeError(f"the rollout did not start: {answer.status} {answer.text}")
    deadline = time.monotonic() + 10
    while call("GET", f"{url}/traffic").json()["weights"].get(args.candidate) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the rollout's first step did not reach the split in 10 s")
        time.sleep(0.05)
    time.sleep(SETTLE_S)


def stop_rollout(url: str) -> bool:
    """Abort the rollout and wait until it has (a command is applied on the controller's
    next tick); whether it was still collecting its first step."""
    state = call("GET", f"{url}/rollout/status", headers=_admin()).json()
    collecting = bool(state["status"] == "running" and state["step"] == 1)
    call("POST", f"{url}/rollout/abort", headers=_admin())
    deadline = time.monotonic() + 10
    while call("GET", f"{url}/rollout/status", headers=_admin()).json()["status"] == "running":
        if time.monotonic() > deadline:
            raise RuntimeError("the rollout was not aborted within 10 s")
        time.sleep(0.05)
    return collecting


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def run(args: argparse.Namespace) -> str:
    readings: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    left_early = 0
    with tempfile.TemporaryDirectory() as folder:
        options = ["--traffic", f"{args.baseline}=1", "--split-file", f"{folder}/traffic.json"]
        env = {"PERFSERVE_ADMIN_TOKEN": TOKEN}
        with running_server(args.store, options=options, env=env, cpus=args.server_cpus) as server:
            knee, limited_by = knee_for_a_share(
                server.url,
                args.store,
                "split",
                slo_ms=args.slo_p99_ms,
                generator_cpu=args.generator_cpus,
            )
            rate = knee * args.share
            print(f"knee {knee:,.0f}/s ({limited_by}); offering {rate:,.0f}/s", file=sys.stderr)
            for round_ in range(args.rounds):
                order = SIDES if round_ % 2 == 0 else SIDES[::-1]
                for side in order:
                    if side == "rollout":
                        start_rollout(server.url, args)
                    reading = sweep_step(
                        server.url, args.store, "split", rate, args.seconds, args.generator_cpus
                    )
                    if side == "rollout" and not stop_rollout(server.url):
                        left_early += 1
                        continue
                    readings[side].append(reading)
    return render(readings, knee, rate, left_early, args)


def render(
    readings: dict[str, list[dict[str, float]]],
    knee: float,
    rate: float,
    left_early: int,
    args: argparse.Namespace,
) -> str:
    median = {
        side: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for side, rounds in readings.items()
        if rounds
    }
    lines = [
        f"knee {knee:,.0f}/s through the split; {rate:,.0f}/s ({args.share:.0%}), "
        f"{args.baseline} -> {args.candidate} at {args.step:g}%, "
        f"medians of {args.rounds} rounds of {args.seconds:g} s "
        f"({left_early} rollout steps left their first step early, not counted)",
        f"{'':<12}{'p99 ms':>10}{'p99 from send':>15}{'achieved/s':>12}{'failed':>8}",
    ]
    for side, figures in median.items():
        lines.append(
            f"{side:<12}{figures['client_p99']:>10.2f}{figures['sent_p99']:>15.2f}"
            f"{figures['achieved']:>12,.0f}{figures['failed']:>8.0f}"
        )
    for side, rounds in readings.items():
        each = ", ".join(f"{r['client_p99']:.1f}" for r in rounds)
        lines.append(f"{side}: p99 per round {each} ms")
    if len(median) == 2:
        ratio = median["rollout"]["client_p99"] / median["no rollout"]["client_p99"]
        lines.append(f"p99 with a rollout over without: {ratio:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfserve.benchmarks.judge.rollout_overhead",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--store", type=Path, default=Path("model_store"))
    parser.add_argument("--baseline", default="sklearn_fp32")
    parser.add_argument("--candidate", default="onnx_fp32")
    parser.add_argument("--step", type=float, default=1.0, help="the candidate's first step, %%")
    parser.add_argument("--share", type=float, default=0.7, help="of the knee, offered")
    parser.add_argument("--slo-p99-ms", type=float, default=SLO_P99_MS)
    parser.add_argument("--seconds", type=float, default=10.0, help="per step")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server-cpus", default="0", help="CPU list the server is pinned to")
    parser.add_argument("--generator-cpus", default="1", help="CPU list the client is pinned to")
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

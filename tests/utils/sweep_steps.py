"""Sweep steps built by hand, for tests of what is made of them (knees, rounds, reports)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.results import ClientSide, StepResult, Totals
from loadtests.sweep.server_metrics import ServerSplit


def step(
    target: str, rate: float, verdict: str, p99_ms: float, utilization: float = 0.4
) -> StepResult:
    """A sweep step at `rate` with `verdict`, 5 s long, every request answered."""
    holds = verdict == "holds"
    client_figures: dict[str, Any] = {f.name: 0.0 for f in fields(ClientSide)}
    client = ClientSide(
        **client_figures
        | {
            "achieved_qps": rate, "sent_qps": rate, "answers": int(5 * rate),
            "p50_ms": p99_ms / 5, "p90_ms": p99_ms / 2, "p95_ms": p99_ms / 1.5,
            "p99_ms": p99_ms, "p999_ms": 1.5 * p99_ms, "max_ms": 2 * p99_ms,
            "miss_ratio": 0.0 if holds else 0.2, "late_sends": 0,
        }
    )  # fmt: skip
    server_figures: dict[str, Any] = {f.name: 0.4 for f in fields(ServerSplit)}
    server = ServerSplit(
        **server_figures | {"statuses": {}, "rejected": {}, "utilization": utilization}
    )
    required: dict[str, Any] = {
        f.name: 0.0
        for f in fields(StepResult)
        if f.default is MISSING and f.default_factory is MISSING
    }
    return StepResult(
        **required
        | {
            "target": target, "step": 1, "phase": "sweep", "target_qps": rate,
            "duration_s": 5.0, "window_s": 1.0, "windows": 4, "client": client,
            "totals": Totals(requests=int(5 * rate), ok=int(5 * rate)), "server": server,
            "enough_samples": True, "stable": True, "verdict": StepVerdict(verdict),
        }
    )  # fmt: skip

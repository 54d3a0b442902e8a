"""A load test as a CI gate: thresholds on the failure ratio and on p95/p99 latency."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_fail_ratio: float = 0.01
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None


def gate_failures(
    requests: int, fail_ratio: float, p95_ms: float, p99_ms: float, limits: Limits
) -> list[str]:
    """Every limit the run broke, in words; an empty list means the gate passes."""
    broken = []
    if requests == 0:
        broken.append("no requests were made")
    if fail_ratio > limits.max_fail_ratio:
        broken.append(f"fail ratio {fail_ratio:.2%} > {limits.max_fail_ratio:.2%}")
    if limits.max_p95_ms is not None and not p95_ms <= limits.max_p95_ms:
        broken.append(f"p95 {p95_ms:.2f} ms > {limits.max_p95_ms:g} ms")
    if limits.max_p99_ms is not None and not p99_ms <= limits.max_p99_ms:
        broken.append(f"p99 {p99_ms:.2f} ms > {limits.max_p99_ms:g} ms")
    return broken

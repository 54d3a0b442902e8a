"""JMeter's results (a CSV .jtl) read per scenario and gated like the k6 thresholds: the
p99 of successful requests and the share of failed ones; a canary user that moved
between variants is a failure too (the split stands still during a run)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Scenario:
    """One thread group's samples."""

    name: str
    elapsed_ms: list[float] = field(default_factory=list)
    failed: int = 0
    requests: int = 0
    variants: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Per user id, the variants that answered it (canary only)."""

    @property
    def p99_ms(self) -> float:
        """The nearest-rank p99 of successful requests' elapsed times."""
        if not self.elapsed_ms:
            return math.nan
        ordered = sorted(self.elapsed_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else math.nan

    @property
    def moved_users(self) -> int:
        return sum(len(seen) > 1 for seen in self.variants.values())


def read_results(path: Path) -> dict[str, Scenario]:
    """The samples of a CSV .jtl with field names, grouped by label (thread group)."""
    scenarios: dict[str, Scenario] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            name = row["label"]
            scenario = scenarios.setdefault(name, Scenario(name))
            scenario.requests += 1
            if row["success"] != "true":
                scenario.failed += 1
            elif name != "bad_share":
                scenario.elapsed_ms.append(float(row["elapsed"]))
            if row.get("user") and row.get("variant"):
                scenario.variants[row["user"]].add(row["variant"])
    return scenarios


def crossed(scenarios: dict[str, Scenario], p99_ms: float, max_error_rate: float) -> list[str]:
    """Every threshold a scenario crossed, one line each; empty when all held."""
    lines = []
    for scenario in scenarios.values():
        if scenario.error_rate > max_error_rate:
            lines.append(
                f"{scenario.name}: {scenario.failed} of {scenario.requests} requests failed "
                f"({scenario.error_rate:.1%} > {max_error_rate:.1%})"
            )
        if scenario.p99_ms > p99_ms:
            lines.append(f"{scenario.name}: p99 {scenario.p99_ms:.1f} ms > {p99_ms:g} ms")
        if scenario.moved_users:
            lines.append(f"{scenario.name}: {scenario.moved_users} users changed variant")
    return lines

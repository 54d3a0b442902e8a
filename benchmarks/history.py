"""Every bench and compare result, kept on disk so later runs are held to earlier ones.

    <history>/<machine fingerprint>/<model version>/<code revision>/<time>-<kind>.json

Timings only compare on one machine, so a new bench is checked against the last
*accepted* bench of the same machine: a variant that is slower there (Mann-Whitney U on
run means, two sessions cannot be paired, and more than a margin that allows for
session-to-session drift) or less accurate is flagged as a regression, and the new record
is not accepted until someone says so (`perfserve history accept ID`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.figures import headline_metric
from benchmarks.statistics import ALPHA, mann_whitney_p
from common.usage import UsageError

# Two sessions drift apart more than two interleaved runs do: a wider margin than a bench's.
SESSION_MARGIN = 0.10
QUALITY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Record:
    path: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])


def record(
    history: Path,
    kind: str,
    summary: dict[str, Any],
    accepted: bool = True,
    extra: dict[str, Any] | None = None,
) -> Record:
    """Check `summary` against the last accepted baseline, then store it. The record is
    accepted if the caller accepts it (a compare that promotes) and nothing regressed."""
    baseline = last_accepted(history, summary["environment"]["machine_fingerprint"])
    regressions = find_regressions(baseline.data["summary"], summary) if baseline else []
    created = datetime.now(UTC)
    env = summary["environment"]
    record_id = f"{created:%Y%m%dT%H%M%S%f}-{kind}"
    data = {
        "id": record_id,
        "kind": kind,
        "created": created.isoformat(timespec="seconds"),
        "model_version": summary["model_version"],
        "code_revision": env["code_revision"],
        "machine_fingerprint": env["machine_fingerprint"],
        "accepted": accepted and not regressions,
        "baseline_id": baseline.id if baseline else None,
        "regressions": regressions,
        **(extra or {}),
        "summary": summary,
    }
    folder = history / env["machine_fingerprint"] / _safe(summary["model_version"])
    folder = folder / _safe(env["code_revision"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record_id}.json"
    path.write_text(json.dumps(data, indent=2))
    return Record(path, data)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)


def records(history: Path) -> list[Record]:
    """Every record, oldest first."""
    found = [Record(p, json.loads(p.read_text())) for p in history.glob("*/*/*/*.json")]
    return sorted(found, key=lambda r: r.id)


def last_accepted(history: Path, fingerprint: str) -> Record | None:
    """The newest accepted bench or compare record of this machine."""
    candidates = [
        r
        for r in records(history)
        if r.data["accepted"] and r.data["machine_fingerprint"] == fingerprint
    ]
    return candidates[-1] if candidates else None


def accept(history: Path, record_id: str) -> Record:
    """Make a record the baseline later runs are held to (e.g. an intended slow-down)."""
    for found in records(history):
        if found.id == record_id:
            found.data["accepted"] = True
            found.path.write_text(json.dumps(found.data, indent=2))
            return found
    raise UsageError(f"no record {record_id!r} in {history}")


def find_regressions(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What got worse from `before` to `after`, for variants and batch sizes in both."""
    regressions = []
    metric = headline_metric(after["task"])
    for name, variant in after["variants"].items():
        old = before["variants"].get(name)
        if old is None:
            continue
        regressions += _quality_regression(name, metric, old, variant)
        for size, cell in variant["batches"].items():
            old_cell = old["batches"].get(size)
            if old_cell is not None:
                regressions += _latency_regression(name, size, old_cell, cell)
    return regressions


def _quality_regression(
    name: str, metric: str, old: dict[str, Any], new: dict[str, Any]
) -> list[str]:
    was, now = old["quality"][metric], new["quality"][metric]
    worse = now > was + QUALITY_TOLERANCE if metric == "rmse" else now < was - QUALITY_TOLERANCE
    return [f"{name}: {metric} {was:.4f} -> {now:.4f}"] if worse else []


def _latency_regression(
    name: str, size: str, old: dict[str, Any], new: dict[str, Any]
) -> list[str]:
    before, after = np.asarray(old["run_means_ms"]), np.asarray(new["run_means_ms"])
    if before.size < 2 or after.size < 2:
        return []
    relative = after.mean() / before.mean() - 1
    p_value = mann_whitney_p(before, after)
    if relative > SESSION_MARGIN and p_value < ALPHA:
        return [
            f"{name} at batch {size}: {before.mean():.4f} -> {after.mean():.4f} ms per call "
            f"({relative:+.0%}, Mann-Whitney p = {p_value:.2g})"
        ]
    return []


def describe(found: list[Record]) -> str:
    lines = [f"{'id':<32}{'kind':<9}{'accepted':<10}{'model version':<34}{'code':<14}machine"]
    for r in found:
        d = r.data
        lines.append(
            f"{r.id:<32}{d['kind']:<9}{('yes' if d['accepted'] else 'NO'):<10}"
            f"{d['model_version']:<34}{d['code_revision'][:12]:<14}{d['machine_fingerprint']}"
        )
        lines += [f"    regression: {text}" for text in d["regressions"]]
    return "\n".join(lines)

"""Every bench and compare result, kept on disk so later runs are held to earlier ones.

    <history>/<machine fingerprint>/<model version>/<code revision>/<time>-<kind>.json

Timings only compare on one machine, so a new bench is checked against the last
*accepted* bench of the same machine: a variant that is slower there or less accurate is
flagged as a regression, and the new record is not accepted until someone says so
(`perfserve history accept ID`).

Slower means three things at once. The runs differ (Mann-Whitney U on run means: two
sessions cannot be paired); the median moved by more than `SESSION_MARGIN`; and it moved
by more than this machine's run-to-run spread allows. That spread is measured from the
history itself: benches of the same code revision and model version differ only by the
machine's drift between sessions (on a shared machine, +24% and +34% between unchanged
runs were seen), which the spread within one bench does not show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict, cast

import numpy as np
from scipy import stats

from perfserve.benchmarks.figures import headline_metric, parse_summary
from perfserve.benchmarks.offline.summary_types import BatchJson, BenchSummary, MeasuredVariant
from perfserve.benchmarks.statistics import ALPHA, mann_whitney_p
from perfserve_common.usage import UsageError

# Two sessions drift apart more than two interleaved runs do: a wider margin than a bench's.
SESSION_MARGIN = 0.10
QUALITY_TOLERANCE = 1e-9


class GateVerdict(TypedDict, total=False):
    """What a compare adds to its record (a bench adds nothing): the gate's verdict and
    its reasons."""

    verdict: Literal["promote", "reject"]
    reasons: list[str]


class RecordHead(TypedDict):
    """What every record holds before its summary."""

    id: str
    kind: str
    created: str
    model_version: str
    code_revision: str
    machine_fingerprint: str
    accepted: bool
    baseline_id: str | None
    regressions: list[str]


class RecordJson(RecordHead, GateVerdict):
    """One record's file: its head, a compare's verdict, and the bench's summary last."""

    summary: BenchSummary


@dataclass(frozen=True)
class Record:
    path: Path
    data: RecordJson

    @property
    def id(self) -> str:
        return str(self.data["id"])


def record(
    history: Path,
    kind: str,
    summary: BenchSummary,
    accepted: bool = True,
    extra: GateVerdict | None = None,
) -> Record:
    """Check `summary` against the last accepted baseline, then store it. The record is
    accepted if the caller accepts it (a compare that promotes) and nothing regressed."""
    fingerprint = summary["environment"]["machine_fingerprint"]
    baseline = last_accepted(history, fingerprint, summary.get("model_name"))
    earlier = [r for r in records(history) if r.data["machine_fingerprint"] == fingerprint]
    regressions = find_regressions(baseline.data["summary"], summary, earlier) if baseline else []
    created = datetime.now(UTC)
    env = summary["environment"]
    record_id = f"{created:%Y%m%dT%H%M%S%f}-{kind}"
    head: RecordHead = {
        "id": record_id,
        "kind": kind,
        "created": created.isoformat(timespec="seconds"),
        "model_version": summary["model_version"],
        "code_revision": env["code_revision"],
        "machine_fingerprint": env["machine_fingerprint"],
        "accepted": accepted and not regressions,
        "baseline_id": baseline.id if baseline else None,
        "regressions": regressions,
    }
    verdict: GateVerdict = extra if extra is not None else {}
    data: RecordJson = {**head, **verdict, "summary": summary}
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
    found = [Record(p, read_record(p)) for p in history.glob("*/*/*/*.json")]
    return sorted(found, key=lambda r: r.id)


def read_record(path: Path) -> RecordJson:
    """One record's file, its summary read as every bench summary is (`parse_summary`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not JSON ({error}): move it out of the history") from None
    if not isinstance(data, dict) or not RecordHead.__required_keys__ <= data.keys():
        raise UsageError(f"{path} is not a history record: move it out of the history")
    parse_summary(data.get("summary"), f"{path}'s summary")
    return cast(RecordJson, data)


def last_accepted(history: Path, fingerprint: str, model_name: str | None = None) -> Record | None:
    """The newest accepted bench or compare record of this machine (and of `model_name`,
    when given: a new version of a model is held to the last one, never another model's
    figures, such as the wide example's to the small one's)."""
    candidates = [
        r
        for r in records(history)
        if r.data["accepted"]
        and r.data["machine_fingerprint"] == fingerprint
        and (model_name is None or r.data["summary"].get("model_name") == model_name)
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


def find_regressions(
    before: BenchSummary, after: BenchSummary, earlier: list[Record] | None = None
) -> list[str]:
    """What got worse from `before` to `after`, for variants and batch sizes in both;
    `earlier` (this machine's records) gives the run-to-run spread timings must exceed."""
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
                spread = run_to_run_spread(earlier or [], name, size)
                regressions += _latency_regression(name, size, old_cell, cell, spread)
    return regressions


@dataclass(frozen=True)
class Spread:
    """How much one bench's median differs from another's on this machine, code unchanged."""

    log_sd: float | None
    """Pooled standard deviation of the log of run medians (None: not measured yet)."""
    dof: int
    runs: int

    def threshold(self) -> float:
        """The relative slow-down a one-sided test at ALPHA needs before it counts."""
        if self.log_sd is None:
            return SESSION_MARGIN
        # A difference of two runs: twice the variance of one.
        quantile = float(stats.t.ppf(1 - ALPHA, self.dof))
        return max(SESSION_MARGIN, float(np.expm1(quantile * self.log_sd * np.sqrt(2))))

    def describe(self) -> str:
        if self.log_sd is None:
            return (
                "this machine's run-to-run spread is not known yet (no code revision benched "
                "twice here): re-run the bench on unchanged code to measure it"
            )
        return (
            f"this machine's run-to-run spread is ±{np.expm1(self.log_sd):.0%} (sd of the median "
            f"over {self.runs} runs of unchanged code), so only a shift over "
            f"{self.threshold():+.0%} counts"
        )


def run_to_run_spread(found: list[Record], variant: str, size: str) -> Spread:
    """Pooled spread of the median per-call time between benches that share the code
    revision and model version: what the machine alone changes from one run to the next."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in found:
        measured = r.data["summary"]["variants"].get(variant)
        cell = measured.get("batches", {}).get(size) if measured else None
        if cell and cell.get("run_means_ms"):
            key = (str(r.data["model_version"]), str(r.data["code_revision"]))
            groups.setdefault(key, []).append(float(np.log(np.median(cell["run_means_ms"]))))
    squares = sum(float(np.sum((np.array(g) - np.mean(g)) ** 2)) for g in groups.values())
    dof = sum(len(g) - 1 for g in groups.values())
    runs = sum(len(g) for g in groups.values() if len(g) > 1)
    return Spread(float(np.sqrt(squares / dof)) if dof else None, dof, runs)


def _quality_regression(
    name: str, metric: str, old: MeasuredVariant, new: MeasuredVariant
) -> list[str]:
    was, now = old["quality"][metric], new["quality"][metric]
    worse = now > was + QUALITY_TOLERANCE if metric == "rmse" else now < was - QUALITY_TOLERANCE
    return [f"{name}: {metric} {was:.4f} -> {now:.4f}"] if worse else []


def _latency_regression(
    name: str, size: str, old: BatchJson, new: BatchJson, spread: Spread
) -> list[str]:
    before, after = np.asarray(old["run_means_ms"]), np.asarray(new["run_means_ms"])
    if before.size < 2 or after.size < 2:
        return []
    was, now = float(np.median(before)), float(np.median(after))
    relative = now / was - 1
    p_value = mann_whitney_p(before, after)
    if relative > spread.threshold() and p_value < ALPHA:
        return [
            f"{name} at batch {size}: median {was:.4f} -> {now:.4f} ms per call "
            f"({relative:+.0%}, Mann-Whitney p = {p_value:.2g}); {spread.describe()}"
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
        lines += [f"    not accepted: {reason}" for reason in why_not_accepted(d)]
    return "\n".join(lines)


def why_not_accepted(data: RecordJson) -> list[str]:
    """The reasons a record is not the baseline (empty when it is accepted)."""
    if data["accepted"]:
        return []
    reasons = [f"regression against {data['baseline_id']}: {text}" for text in data["regressions"]]
    if data.get("verdict") == "reject":
        reasons += [
            f"the compare gate rejected the candidate: {text}" for text in data.get("reasons", [])
        ]
    return reasons or ["not accepted by hand yet (`perfserve history accept ID`)"]

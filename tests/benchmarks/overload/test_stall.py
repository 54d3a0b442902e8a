"""`perfserve bench-stall`: what a freeze's windows say, and the command end to end, tiny."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadtests.recorder import Tally, Window
from perfserve.benchmarks.overload.stall import Cell, StallSettings, freeze_outcome, render
from perfserve.cli import main

WINDOW_S = 0.1


def _settings() -> StallSettings:
    return StallSettings(
        Path("store"), Path("out"), "onnx_int8", 1000.0, 50.0, [0.5], [300.0], [0.0],
        periods=1, period_s=5.0, window_s=WINDOW_S, max_in_flight=64, server_cpus="0",
        generator_cpu=1,
    )  # fmt: skip


def _windows(p99s_ms: Sequence[float | None]) -> tuple[list[Tally], dict[int, Window]]:
    """One window per value: 100 answers all at that latency (None: every request shed)."""
    windows = {}
    for index, p99 in enumerate(p99s_ms):
        window = Window()
        tally = window.tally("onnx_int8")
        if p99 is None:
            tally.outcomes["shed"] += 100
            tally.statuses["503"] += 100
        else:
            tally.outcomes["ok"] += 100
            tally.statuses["200"] += 100
            for _ in range(100):
                tally.record(round(p99 * 1000), round(p99 * 1000), None)
        windows[index] = window
    return [windows[i].merged_tally() for i in range(len(p99s_ms))], windows


def test_recovery_runs_from_the_resume_to_the_first_window_that_stays_under_the_slo() -> None:
    # Freeze from 2.0 s to 2.3 s; windows from 3.0 s on stay under 50 ms.
    p99s: list[float | None] = [5.0] * 20 + [400.0] * 5 + [None] * 2 + [80.0] * 3 + [5.0] * 20
    tallies, windows = _windows(p99s)
    outcome = freeze_outcome(tallies, windows, 2.0, 2.3, 5.0, _settings())
    assert outcome.recovery_s == pytest.approx(0.7)
    assert outcome.worst_p99_ms == pytest.approx(400.0, rel=0.01)
    assert (outcome.answered, outcome.refused, outcome.errors, outcome.dropped) == (
        2800,
        200,
        {},
        0,
    )


def test_a_freeze_whose_p99_never_stays_under_the_slo_did_not_recover() -> None:
    tallies, windows = _windows([5.0] * 20 + [400.0] * 10 + [5.0] * 19 + [60.0])
    assert freeze_outcome(tallies, windows, 2.0, 2.3, 5.0, _settings()).recovery_s is None


def test_failures_other_than_503_are_told_apart_by_kind_and_from_the_generators_drops() -> None:
    tallies, windows = _windows([5.0] * 20 + [400.0] * 5 + [5.0] * 25)
    tallies[21].outcomes["error"] += 7
    tallies[21].statuses.update({"no_answer": 5, "500": 2})
    windows[22].dropped += 3
    outcome = freeze_outcome(tallies, windows, 2.0, 2.3, 5.0, _settings())
    assert (outcome.errors, outcome.dropped) == ({"500": 2, "no_answer": 5}, 3)
    cell = Cell("no queue deadline", 0.0, 0.85, 6800.0, 1000.0, 2.0, 130.0, [outcome])
    assert "| 7 (500 2, no_answer 5) | 3 |" in render([cell])


@pytest.mark.integration
def test_bench_stall_freezes_each_server_and_writes_every_freeze(
    store: Path, tmp_path: Path
) -> None:
    options = ["--store", str(store), "--out", str(tmp_path), "--knee-qps", "400"]
    options += ["--loads", "0.5", "--freezes-ms", "300", "--periods", "1", "--period-s", "4"]
    options += ["--queue-deadline-ms", "0,25", "--max-in-flight", "64"]
    assert main(["bench-stall", *options]) == 0
    document = json.loads((tmp_path / "stall.json").read_text())
    cells = document["cells"]
    assert [c["config"] for c in cells] == ["no queue deadline", "queue deadline 25 ms"]
    for cell in cells:
        (freeze,) = cell["freezes"]
        assert freeze["resumed_s"] - freeze["started_s"] >= 0.3 - 0.002  # rounded to ms
        assert freeze["answered"] > 0 and freeze["worst_p99_ms"] >= 250
        assert cell["p99_before_ms"] > 0
    rows = list(csv.DictReader((tmp_path / "stall.csv").open()))
    assert len(rows) == 2 and rows[0]["freeze_ms"] == "300.0"

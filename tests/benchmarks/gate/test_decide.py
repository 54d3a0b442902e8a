"""Decisions on hand-made tables: limits filter with reasons, objectives rank, scores weigh."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from perfserve.benchmarks.figures import VariantFigures
from perfserve.benchmarks.gate.decide import (
    Requirements,
    decide,
    load_requirements,
    parse_requirements,
)
from perfserve.benchmarks.gate.score import (
    best_by_dimension,
    composite_scores,
    parse_weights,
    scoring_weights,
)
from perfserve.cli import main
from perfserve_common.usage import UsageError

MIB = 2**20


def _row(name: str, accuracy: float, ms: float, mib: float, mj: float) -> VariantFigures:
    return VariantFigures(
        variant=name,
        batch_size=1,
        quality_metric="accuracy",
        quality=accuracy,
        mean_ms=ms,
        p95_ms=ms * 1.5,
        p99_ms=ms * 2,
        throughput_sps=1000 / ms,
        memory_bytes=int(mib * MIB),
        energy_mj_per_sample=mj,
        file_size_bytes=1000,
    )


TABLE = [
    _row("accurate_slow", 0.97, 2.0, 10, 2.0),
    _row("fast_big", 0.95, 0.2, 100, 0.2),
    _row("cheap_sloppy", 0.90, 0.5, 5, 0.5),
]


def test_limits_reject_with_the_limit_and_the_figure() -> None:
    decision = decide(
        TABLE,
        Requirements(limits={"max_p95_latency_ms": 1.0, "min_accuracy": 0.93}, objective="latency"),
    )
    assert decision.ranked == [("fast_big", 0.2)]
    assert decision.rejected == {
        "accurate_slow": [
            "max_p95_latency_ms: p95 latency per call 3 ms is above the maximum of 1 ms"
        ],
        "cheap_sloppy": ["min_accuracy: accuracy 0.9 is below the minimum of 0.93"],
    }
    assert decision.choice == "fast_big"


def test_every_broken_limit_is_listed() -> None:
    limits = {"max_memory_mb": 50, "min_throughput_sps": 1000, "max_energy_mj_per_sample": 1.0}
    decision = decide(TABLE, Requirements(limits=limits, objective="accuracy"))
    assert [name for name, _ in decision.ranked] == ["cheap_sloppy"]
    assert len(decision.rejected["accurate_slow"]) == 2  # throughput 500/s and 2 mJ
    assert decision.rejected["fast_big"] == [
        "max_memory_mb: memory 100 MiB is above the maximum of 50 MiB"
    ]


def test_a_rejection_on_estimated_energy_says_so() -> None:
    limits = {"max_energy_mj_per_sample": 1.0, "max_memory_mb": 50}
    how = "CPU-time proxy: no readable RAPL counter"
    decision = decide(TABLE, Requirements(limits=limits, objective="energy"), how)
    assert decision.rejected["accurate_slow"] == [
        "max_energy_mj_per_sample: energy 2 mJ/sample is above the maximum of 1 mJ/sample "
        f"(an estimate, not a measurement: {how})"
    ]
    assert decision.rejected["fast_big"] == [  # judged on memory alone: no estimate named
        "max_memory_mb: memory 100 MiB is above the maximum of 50 MiB"
    ]


@pytest.mark.parametrize(
    ("objective", "order"),
    [
        ("latency", ["fast_big", "cheap_sloppy", "accurate_slow"]),
        ("accuracy", ["accurate_slow", "fast_big", "cheap_sloppy"]),
        ("throughput", ["fast_big", "cheap_sloppy", "accurate_slow"]),
        ("memory", ["cheap_sloppy", "accurate_slow", "fast_big"]),
        ("energy", ["fast_big", "cheap_sloppy", "accurate_slow"]),
    ],
)
def test_objectives_rank_the_survivors(objective: str, order: list[str]) -> None:
    decision = decide(TABLE, Requirements(objective=objective))
    assert [name for name, _ in decision.ranked] == order


def test_no_survivor_means_no_choice() -> None:
    decision = decide(TABLE, Requirements(limits={"min_accuracy": 0.99}))
    assert decision.choice is None and len(decision.rejected) == 3


def test_composite_score_by_hand() -> None:
    # accuracy only: standing (a - 0.90) / 0.07
    scores = composite_scores(TABLE, parse_weights("accuracy=1"))
    assert scores == pytest.approx({"accurate_slow": 1.0, "fast_big": 5 / 7, "cheap_sloppy": 0.0})
    # latency and memory equally: fast_big (1 + 0) / 2, cheap_sloppy ((2-.5)/1.8 + 1) / 2
    scores = composite_scores(TABLE, parse_weights("latency=1,memory=1"))
    assert scores["fast_big"] == pytest.approx(0.5)
    assert scores["cheap_sloppy"] == pytest.approx((1.5 / 1.8 + 1) / 2)
    assert scores["accurate_slow"] == pytest.approx((0 + 90 / 95) / 2)
    best = best_by_dimension(TABLE, scores)
    assert best["accuracy"] == ["accurate_slow"] and best["latency"] == ["fast_big"]
    assert best["memory"] == ["cheap_sloppy"] and best["overall"] == ["cheap_sloppy"]
    tied = [replace(row, quality=0.95) for row in TABLE]
    assert best_by_dimension(tied, scores)["accuracy"] == [row.variant for row in TABLE]


def test_score_objective_scales_among_survivors_only() -> None:
    decision = decide(
        TABLE, parse_requirements({"limits": {"min_accuracy": 0.93}, "weights": {"accuracy": 1}})
    )
    assert decision.ranked == [("accurate_slow", 1.0), ("fast_big", 0.0)]


def test_requirement_and_weight_mistakes_are_usage_errors(tmp_path: Path) -> None:
    bad: dict[str, Any]
    for bad in (
        {"limit": {}},
        {"limits": {"max_latency": 1}},
        {"objective": "speed"},
        {"weights": {"speed": 1}},
    ):
        with pytest.raises(UsageError):
            parse_requirements(bad)
    for text in ("speed=1", "accuracy=x", "accuracy=0"):
        with pytest.raises(UsageError):
            parse_weights(text)
    path = tmp_path / "r.yaml"
    path.write_text("limits: [1, 2")
    with pytest.raises(UsageError):
        load_requirements(path)


def test_without_an_energy_counter_the_score_drops_energy_and_says_so() -> None:
    weights = parse_weights("latency=1,energy=1")
    assert scoring_weights(weights, energy_measured=True) == (weights, None)
    kept, note = scoring_weights(weights, energy_measured=False)
    assert kept["energy"] == 0.0 and kept["latency"] == 1.0
    assert note is not None and "CPU time twice" in note
    # Energy ranks these rows like latency does: weighted, it would double latency's say.
    requirements = parse_requirements({"weights": {"latency": 1, "energy": 1}})
    estimated = decide(TABLE, requirements, energy_estimate="CPU-time proxy")
    latency_only = decide(TABLE, parse_requirements({"weights": {"latency": 1}}))
    assert estimated.ranked == latency_only.ranked
    assert estimated.notes == [note]
    with pytest.raises(UsageError, match="energy is the only weighted dimension"):
        scoring_weights(parse_weights("energy=1"), energy_measured=False)


def test_decide_command_on_a_real_bench(
    bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requirements = tmp_path / "requirements.yaml"
    requirements.write_text(
        "limits:\n  min_accuracy: 0.9\n  max_memory_mb: 4096\nobjective: latency\n"
    )
    assert main(["decide", "--requirements", str(requirements), "--bench", str(bench_dir)]) == 0
    assert "choose: " in capsys.readouterr().out
    requirements.write_text("limits:\n  min_accuracy: 1.01\n")
    assert main(["decide", "--requirements", str(requirements), "--bench", str(bench_dir)]) == 1
    out = capsys.readouterr().out
    assert "no variant meets every limit" in out and out.count("below the minimum of 1.01") == 3

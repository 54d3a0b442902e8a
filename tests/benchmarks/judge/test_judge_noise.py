"""The judge's noise benchmark: its faults change only what they claim, and it runs on the
committed recording (two trials per case: a smoke test, the figures come from the command)."""

from __future__ import annotations

import numpy as np

from perfserve.benchmarks.judge.judge_noise import (
    DATA,
    Draw,
    errors,
    flips,
    load_fixture,
    run,
    scenarios,
    wider_tail,
)
from service.rollout.judge import JudgePolicy


def draw() -> Draw:
    """An odd count, so the median is one answer, which a wider tail leaves in place."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=200)
    return Draw(rng.lognormal(np.log(0.001), 0.5, 2001), np.full(2001, 200), scores, scores)


def test_a_wider_tail_keeps_the_median_and_lengthens_the_tail() -> None:
    before = draw()
    after = wider_tail(2.0)(before, np.random.default_rng(1))
    assert np.median(after.seconds) == np.median(before.seconds)
    assert np.quantile(after.seconds, 0.99) > 1.5 * np.quantile(before.seconds, 0.99)


def test_errors_come_on_top_of_the_answers() -> None:
    before = draw()
    after = errors(0.02)(before, np.random.default_rng(2))
    failed = after.status == 500
    assert 0.01 < failed.mean() < 0.03
    assert np.array_equal(after.seconds[~failed], before.seconds)


def test_flips_mirror_the_candidate_scores_only() -> None:
    before = draw()
    after = flips(0.5)(before, np.random.default_rng(3))
    moved = after.candidate_scores != before.candidate_scores
    assert 0.3 < moved.mean() < 0.7
    assert np.allclose(after.candidate_scores[moved], 1.0 - before.candidate_scores[moved])
    assert np.array_equal(after.baseline_scores, before.baseline_scores)


def test_the_benchmark_runs_every_case_on_the_recording() -> None:
    fixture = load_fixture(DATA)
    assert fixture.baseline.seconds.size == fixture.candidate.seconds.size == 3000
    lines = list(run(fixture, JudgePolicy(), trials=2, factors=(1,), scale=1, seed=0))
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(scenarios(fixture))
    assert rows[0].startswith("| identical variants | none | 0/2")

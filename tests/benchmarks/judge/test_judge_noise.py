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
    shadow,
    wider_tail,
)
from service.rollout.judge import JudgePolicy, predictions_gate, required_samples


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
    assert rows[0].startswith("| healthy int8 (twin latency, fp32 -> int8 scores) | none | 0/2")


def test_defaults_pass_a_healthy_int8_shadow_and_catch_two_percent_flips() -> None:
    """On the recorded fp32 and int8 answers, windows of the required size: the healthy
    pair must pass at least 99% of the time and 2% flipped labels must be caught most of
    the time (98% over 1,000 windows, docs/ROLLOUT.md; 200 here, seeded)."""
    fixture = load_fixture(DATA)
    policy = JudgePolicy()
    n = required_samples(policy)["predictions"]
    rng = np.random.default_rng(5)
    healthy = flipped = 0
    for _ in range(200):
        rows = rng.integers(0, fixture.baseline_scores.size, n)
        scores = Draw(np.zeros(1), np.zeros(1), fixture.baseline_scores[rows],
                      fixture.candidate_scores[rows])  # fmt: skip
        healthy += predictions_gate(shadow(scores), policy).outcome == "fail"
        flipped += predictions_gate(shadow(flips(0.02)(scores, rng)), policy).outcome == "fail"
    assert healthy <= 2 and flipped >= 180

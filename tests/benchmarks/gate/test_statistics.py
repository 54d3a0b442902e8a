"""The statistics agree with SciPy and textbook values, and their intervals cover the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from perfserve.benchmarks.statistics import (
    bootstrap_mean_ci,
    coefficient_of_variation,
    compare_paired,
    mann_whitney_p,
    noise_warning,
    paired_cohens_d,
    wilcoxon_p,
)

# A classic paired example: the same 10 subjects before and after.
BEFORE = np.array([200.1, 190.9, 192.7, 213.0, 241.4, 196.9, 172.2, 185.5, 205.2, 193.7])
AFTER = np.array([392.9, 393.2, 345.1, 393.0, 434.0, 427.9, 422.0, 383.9, 392.3, 352.2])


@pytest.mark.parametrize(
    ("draw", "truth"),
    [
        (lambda rng: rng.normal(5.0, 2.0, 30), 5.0),
        # Skewed like latencies: the case BCa is there for.
        (lambda rng: rng.exponential(1.0, 30), 1.0),
    ],
)
def test_bootstrap_interval_covers_the_true_mean_at_about_95_percent(draw, truth) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(42)
    trials = 400
    hits = sum(bootstrap_mean_ci(draw(rng), seed=i).covers(truth) for i in range(trials))
    # 95% nominal; a bootstrap of 30 samples runs a little narrow. Binomial SE is ~1.1%.
    assert 0.90 <= hits / trials <= 0.98


def test_interval_of_a_constant_sample_is_the_point() -> None:
    interval = bootstrap_mean_ci(np.full(10, 3.0))
    assert (interval.estimate, interval.low, interval.high) == (3.0, 3.0, 3.0)


def test_paired_cohens_d_matches_the_paired_t_statistic() -> None:
    d = paired_cohens_d(BEFORE, AFTER)
    differences = AFTER - BEFORE
    assert d == pytest.approx(differences.mean() / differences.std(ddof=1))
    # d_z * sqrt(n) is exactly SciPy's paired t statistic.
    t = stats.ttest_rel(AFTER, BEFORE).statistic
    assert d * math.sqrt(len(BEFORE)) == pytest.approx(t)


def test_cohens_d_on_hand_computed_differences() -> None:
    # differences 1, 2, 3: mean 2, sample sd 1.
    assert paired_cohens_d(np.zeros(3), np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert paired_cohens_d(np.ones(4), np.ones(4)) == 0.0


def test_tests_agree_with_scipy() -> None:
    assert wilcoxon_p(BEFORE, AFTER) == pytest.approx(stats.wilcoxon(AFTER - BEFORE).pvalue)
    # 10 of 10 positive differences: exact two-sided p = 2 / 2**10.
    assert wilcoxon_p(BEFORE, AFTER) == pytest.approx(2 / 2**10)
    assert mann_whitney_p(BEFORE, AFTER) == pytest.approx(stats.mannwhitneyu(BEFORE, AFTER).pvalue)
    assert wilcoxon_p(BEFORE, BEFORE) == 1.0


def test_a_clearly_slower_sample_is_called_slower_with_a_large_effect() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.normal(1.0, 0.1, 30)
    comparison = compare_paired(baseline, baseline + 0.5 + rng.normal(0, 0.05, 30))
    assert comparison.verdict == "slower"
    assert comparison.cohens_d > 2
    assert comparison.difference.low > 0
    assert comparison.relative == pytest.approx(0.5, abs=0.05)
    faster = compare_paired(baseline + 0.5, baseline)
    assert faster.verdict == "faster"
    assert faster.cohens_d < -2


def test_noise_alone_is_no_detectable_difference() -> None:
    rng = np.random.default_rng(4)
    baseline = rng.normal(1.0, 0.1, 30)
    comparison = compare_paired(baseline, baseline + rng.normal(0, 0.05, 30))
    assert comparison.verdict == "no detectable difference"
    assert comparison.difference.covers(0.0)


def test_a_significant_but_tiny_difference_is_below_the_effect_margin() -> None:
    rng = np.random.default_rng(5)
    baseline = rng.normal(1.0, 0.01, 30)
    comparison = compare_paired(baseline, baseline * 1.01)
    assert comparison.significant
    assert comparison.verdict == "no detectable difference"


def test_noise_warning_only_when_runs_disagree() -> None:
    steady = np.array([1.0, 1.01, 0.99, 1.0])
    noisy = np.array([1.0, 1.5, 0.6, 1.2])
    assert coefficient_of_variation(steady) < 0.02
    assert noise_warning("x", {"batch 1": steady}) is None
    warning = noise_warning("onnx_int8", {"batch 1": steady, "batch 8": noisy})
    assert warning is not None and warning.startswith("onnx_int8: run-to-run spread above 10%")
    assert "batch 8 (CV 35%)" in warning and "batch 1" not in warning

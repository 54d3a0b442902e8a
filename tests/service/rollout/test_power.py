"""Exact power of the judge's count tests, checked against the tests themselves."""

from __future__ import annotations

import pytest
from scipy import stats

from service.rollout.power import binomial_power, fisher_power, smallest_n


def test_fisher_power_matches_a_sum_over_scipys_fisher_test() -> None:
    """The vectorized hypergeometric tails give what `fisher_exact` decides, summed over
    every pair of event counts (small n, so the brute force is quick)."""
    n, p0, p1, alpha = 40, 0.05, 0.25, 0.01
    brute = sum(
        stats.binom.pmf(c, n, p1) * stats.binom.pmf(b, n, p0)
        for c in range(n + 1)
        for b in range(n + 1)
        if stats.fisher_exact([[c, n - c], [b, n - b]], alternative="greater").pvalue < alpha
    )
    assert fisher_power(n, p0, p1, alpha) == pytest.approx(brute, abs=1e-5)


def test_binomial_power_matches_a_sum_over_scipys_binomial_test() -> None:
    n, p0, p1, alpha = 200, 0.01, 0.05, 0.001
    brute = sum(
        stats.binom.pmf(k, n, p1)
        for k in range(n + 1)
        if stats.binomtest(k, n, p0, alternative="greater").pvalue < alpha
    )
    assert binomial_power(n, p0, p1, alpha) == pytest.approx(brute, abs=1e-9)


def test_smallest_n_finds_the_edge_and_refuses_the_impossible() -> None:
    assert smallest_n(lambda n: min(1.0, n / 1000), 0.8) == 800
    with pytest.raises(ValueError, match="cannot be detected"):
        smallest_n(lambda n: 0.0, 0.8)

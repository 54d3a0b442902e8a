"""How much data a count test needs: exact power of the judge's binomial and Fisher tests,
and the smallest sample size that reaches a target power.

Exact sums rather than normal approximations, because the rates the judge cares about
are small (1% of answers above a p99, errors against a baseline with none), where the
approximations promise power the tests do not have.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import special, stats


def binomial_power(n: int, p0: float, p1: float, alpha: float) -> float:
    """Power of the exact one-sided binomial test of rate p0 when the true rate is p1."""
    critical = stats.binom.isf(alpha, n, p0) + 1  # smallest count with P(X >= count) <= alpha
    return float(stats.binom.sf(critical - 1, n, p1))


def fisher_power(n: int, p0: float, p1: float, alpha: float) -> float:
    """Power of the one-sided Fisher test with n requests per variant, baseline rate p0,
    candidate rate p1: summed exactly over both variants' likely event counts.

    Given k events in all, the candidate's share is hypergeometric; its tail sums are
    computed for every k at once from log-binomials, which is what makes the sample-size
    search quick.
    """
    b = np.arange(int(stats.binom.isf(1e-6, n, p0)) + 2)
    c = np.arange(int(stats.binom.isf(1e-6, n, p1)) + 2)
    k, x = np.ogrid[: c.size + b.size, : c.size + b.size]
    possible = (x <= k) & (x <= n) & (k - x <= n)
    with np.errstate(invalid="ignore"):
        log_pmf = log_choose(n, x) + log_choose(n, k - x) - log_choose(2 * n, k)
    pmf = np.where(possible, np.exp(np.where(possible, log_pmf, 0.0)), 0.0)
    tail = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # P(candidate holds >= x of k events)
    p_values = tail[c[:, None] + b[None, :], c[:, None]]
    weights = np.outer(stats.binom.pmf(c, n, p1), stats.binom.pmf(b, n, p0))
    return float(weights[p_values < alpha].sum())


def log_choose(total: int | np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.asarray(
        special.gammaln(total + 1)
        - special.gammaln(chosen + 1)
        - special.gammaln(total - chosen + 1)
    )


def smallest_n(power_at: Callable[[int], float], target: float, limit: int = 1 << 22) -> int:
    """The smallest n whose power reaches target, by doubling then bisection (power of a
    discrete test saws slightly with n; this finds a point on its rising edge)."""
    high = 1
    while power_at(high) < target:
        high *= 2
        if high > limit:
            raise ValueError("the policy's effects cannot be detected with any sample size")
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power_at(middle) >= target else (middle, high)
    return high

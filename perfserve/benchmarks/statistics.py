"""Statistics that decide: confidence intervals, paired comparisons, effect sizes, verdicts.

Timing samples are run means (one per interleaved run), not single calls: calls inside a
run share the machine's state of that moment, so runs are the units that are close to
independent, and pairing run i of a candidate with run i of the baseline cancels drift
that hit both.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 4000
# Run-to-run coefficient of variation above which figures are flagged as noisy.
NOISE_CV = 0.10
# Differences smaller than this share of the baseline are treated as noise, not a verdict:
# on a shared machine two copies of one model can differ by a few percent.
MIN_EFFECT = 0.05

Verdict = Literal["faster", "slower", "no detectable difference"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Comparison:
    """A candidate's samples against the baseline's, paired run by run."""

    baseline_mean: float
    candidate_mean: float
    difference: Interval
    """Candidate minus baseline, with a bootstrap CI of the mean paired difference."""
    relative: float
    """Mean difference as a share of the baseline mean."""
    cohens_d: float
    """Paired Cohen's d (d_z): mean difference over the standard deviation of differences."""
    p_value: float
    """Two-sided Wilcoxon signed-rank test of the paired differences."""
    verdict: Verdict

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def bootstrap_mean_ci(
    samples: np.ndarray, confidence: float = CONFIDENCE, seed: int = 0
) -> Interval:
    """Mean with a BCa bootstrap interval; BCa corrects the skew latency samples have.

    A constant sample has no spread to resample, so its interval is the point itself.
    """
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples")
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        return Interval(mean, mean, mean)
    low, high = _bootstrap(values, confidence, seed, "BCa")
    if not (math.isfinite(low) and math.isfinite(high)):
        # BCa is undefined for a few degenerate shapes; the percentile interval is not.
        low, high = _bootstrap(values, confidence, seed, "percentile")
    return Interval(mean, low, high)


def _bootstrap(
    values: np.ndarray, confidence: float, seed: int, method: str
) -> tuple[float, float]:
    with warnings.catch_warnings():
        # Near-constant samples make BCa divide by zero; the caller falls back on NaN.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.bootstrap(
            (values,),
            np.mean,
            confidence_level=confidence,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    return float(low), float(high)


def paired_cohens_d(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """d_z = mean(candidate - baseline) / sd(candidate - baseline); 0 when nothing differs."""
    differences = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    spread = float(differences.std(ddof=1)) if differences.size > 1 else 0.0
    mean = float(differences.mean())
    if spread == 0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / spread


def wilcoxon_p(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every pair is equal."""
    differences = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if not np.any(differences):
        return 1.0
    return float(stats.wilcoxon(differences, alternative="two-sided").pvalue)


def mann_whitney_p(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value for samples that cannot be paired (separate sessions)."""
    return float(stats.mannwhitneyu(before, after, alternative="two-sided").pvalue)


def compare_paired(
    baseline: np.ndarray,
    candidate: np.ndarray,
    min_effect: float = MIN_EFFECT,
    seed: int = 0,
) -> Comparison:
    """Compare two paired samples of a cost (lower is better, e.g. latency).

    The verdict needs both: a significant test, and a CI of the difference whose near end
    is at least `min_effect` of the baseline away from zero (a minimum-effect test: the
    difference is confidently at least that large, not merely its point estimate). On a
    loaded host the run means of two copies of one model scatter by 20-40%, and a point
    estimate past the margin with a CI that only excludes zero called 3 benches of 44
    different, the near end none of the 28 of them checked; anything less is "no
    detectable difference".
    """
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if base.shape != cand.shape or base.size < 2:
        raise ValueError("paired comparison needs two samples of equal length, at least 2")
    difference = bootstrap_mean_ci(cand - base, seed=seed)
    base_mean = float(base.mean())
    relative = difference.estimate / base_mean if base_mean else 0.0
    p_value = wilcoxon_p(base, cand)
    margin = min_effect * abs(base_mean)
    verdict: Verdict = "no detectable difference"
    if p_value < ALPHA and difference.low >= margin:
        verdict = "slower"
    elif p_value < ALPHA and difference.high <= -margin:
        verdict = "faster"
    return Comparison(
        baseline_mean=base_mean,
        candidate_mean=float(cand.mean()),
        difference=difference,
        relative=relative,
        cohens_d=paired_cohens_d(base, cand),
        p_value=p_value,
        verdict=verdict,
    )


def mcnemar_p(baseline_wrong: np.ndarray, candidate_wrong: np.ndarray) -> float:
    """Exact McNemar test: of the rows exactly one of two classifiers gets wrong, is the
    split further from 50/50 than chance? 1.0 when they never disagree."""
    base, cand = np.asarray(baseline_wrong, bool), np.asarray(candidate_wrong, bool)
    only_base, only_cand = int(np.sum(base & ~cand)), int(np.sum(cand & ~base))
    if only_base + only_cand == 0:
        return 1.0
    return float(stats.binomtest(only_cand, only_base + only_cand, 0.5).pvalue)


def coefficient_of_variation(samples: np.ndarray) -> float:
    """Standard deviation over mean of run means: how much runs disagree with each other."""
    values = np.asarray(samples, dtype=float)
    mean = float(values.mean())
    return float(values.std(ddof=1)) / mean if values.size > 1 and mean else 0.0


def noise_warning(
    label: str, cells: dict[str, np.ndarray], threshold: float = NOISE_CV
) -> str | None:
    """One sentence for the report naming the cells (e.g. batch sizes) whose run-to-run
    spread is high enough to hide small differences; None when all are steady."""
    spreads = {key: coefficient_of_variation(samples) for key, samples in cells.items()}
    noisy = ", ".join(f"{key} (CV {cv:.0%})" for key, cv in spreads.items() if cv > threshold)
    if not noisy:
        return None
    return (
        f"{label}: run-to-run spread above {threshold:.0%} at {noisy}; its absolute figures "
        "hide differences smaller than that (paired comparisons cancel the drift all variants "
        "share). Use more runs or a quieter machine."
    )

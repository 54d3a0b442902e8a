"""The rollout judge: a candidate against the baseline over the same window, gate by gate.

Pure functions, no I/O. Each gate answers pass, fail or inconclusive with a one-line reason
carrying its numbers. Three rules keep noise from rolling back a healthy candidate:

- **Enough data or no verdict.** `required_samples` derives each gate's minimum sample size
  from what the gate tests (the power to see a stated effect at the chosen alpha); below
  it the gate is inconclusive, never pass or fail.
- **A bounded false-fail rate.** Every statistical test runs at `policy.family_alpha`
  divided by the number of tests (Bonferroni), so identical variants fail one judgement
  with probability at most `family_alpha` (0.01), whatever the gates' correlation.
- **Significance and size.** A relative gate fails only when the difference is both
  significant and larger than a stated effect (10% and 0.5 ms for latency, 0.5 points of
  error rate, ...): with thousands of requests, trivial differences become significant.

Why these tests, and what the rollout tools this replaces get wrong, is in docs/ROLLOUT.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

import numpy as np
from scipy import stats

from service.rollout.power import binomial_power, fisher_power, smallest_n

Outcome = Literal["pass", "fail", "inconclusive"]
TESTS = 8
"""Statistical tests that can fail a judgement (Bonferroni divisor): latency shift and
tail, errors, shed, disagreement, score shift, SLO p99, SLO error rate."""


@dataclass(frozen=True)
class VariantWindow:
    """One variant's traffic over one analysis window."""

    latencies_s: Sequence[float]
    """Server-side durations of answered (200) requests."""
    requests: int
    """Prediction requests routed to the variant (all statuses)."""
    errors: int
    """Failures: 500 and 504 (not 4xx, not 503)."""
    shed: int
    """503 refusals."""


@dataclass(frozen=True)
class ShadowWindow:
    """Mirrored requests: the candidate's answer against the served baseline answer."""

    compared: int
    disagreed: int
    """Label differs (classifier) or beyond tolerance (regressor)."""
    baseline_scores: Sequence[float]
    """Served score per compared request."""
    candidate_scores: Sequence[float]
    """The candidate's score for the same inputs."""


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    outcome: Outcome
    reason: str
    figures: Mapping[str, float]


@dataclass(frozen=True)
class JudgePolicy:
    """Thresholds of the judge. Defaults suit a sub-millisecond to tens-of-ms service."""

    family_alpha: float = 0.01
    """Chance that identical variants fail one judgement; split evenly over the tests.
    0.01 keeps a five-step rollout of a healthy candidate under 5% false rollbacks."""
    power: float = 0.8
    """Chance to catch the stated effects once a gate has its required samples."""
    max_latency_increase: float = 0.10
    """Hodges-Lehmann shift, as a share of the baseline median, that fails the gate."""
    min_latency_shift_s: float = 0.0005
    """Absolute floor for the shift and the tail growth: below half a millisecond no user
    notices, however significant."""
    latency_superiority: float = 0.55
    """P(candidate slower than baseline) the rank test must detect at `power`: a 10%
    shift of log-normal latencies with sigma 0.5, about x1.15 on the recorded ones (how
    much a shift moves it depends on the spread; docs/ROLLOUT.md)."""
    tail_quantile: float = 0.99
    max_tail_ratio: float = 1.20
    """Candidate p99 over baseline p99 that fails the gate (with a significant test)."""
    detect_factor: float = 3.0
    """Rate tests must catch, at `power`, a rate this many times its limit: 3% of answers
    above a p99 (1%), disagreement at 3x the allowed rate, errors at 3x the allowance."""
    error_allowance: float = 0.005
    """Excess error (or shed) rate over the baseline tolerated even when significant."""
    allowed_disagreement: float = 0.005
    """Share of shadow answers that may differ from the served ones. 0.5%: a healthy
    fp32 -> int8 conversion differs on none of the recorded rows and passed 1,000 of
    1,000 windows, while 2% flipped labels (four times this) are caught in 98% of
    windows of the required size; at 1% they were caught in 23% (docs/ROLLOUT.md)."""
    psi_limit: float = 0.2
    """Population stability index of the scores that fails (0.2: the usual 'major shift')."""
    score_shift_detect: float = 0.1
    """Kolmogorov-Smirnov distance between score distributions the test must resolve."""
    score_bins: int = 10
    slo_p99_s: float = 0.050
    max_error_rate: float = 0.01
    require_shadow: bool = True
    """Without shadow traffic the predictions gate is inconclusive (True) or left out."""

    def __post_init__(self) -> None:
        """Refuse a policy no sample size could satisfy, naming the field."""
        detect, tail = self.detect_factor, 1.0 - self.tail_quantile
        bounds = [
            ("family_alpha", self.family_alpha, 0.0, 1.0),
            ("power", self.power, 0.5, 1.0),
            ("latency_superiority", self.latency_superiority, 0.5, 1.0),
            ("tail_quantile", self.tail_quantile, 0.0, 1.0),
            ("score_shift_detect", self.score_shift_detect, 0.0, 1.0),
            ("score_bins", self.score_bins, 1.0, math.inf),
            ("detect_factor", detect, 1.0, math.inf),
            ("detect_factor x (1 - tail_quantile)", detect * tail, 0.0, 1.0),
            ("detect_factor x error_allowance", detect * self.error_allowance, 0.0, 1.0),
            ("detect_factor x allowed_disagreement", detect * self.allowed_disagreement, 0.0, 1.0),
            ("detect_factor x max_error_rate", detect * self.max_error_rate, 0.0, 1.0),
        ]
        for name, value, low, high in bounds:
            if not low < value < high:
                raise ValueError(f"{name} must be in ({low:g}, {high:g}), got {value:g}")

    @property
    def test_alpha(self) -> float:
        return self.family_alpha / TESTS


def judge(
    baseline: VariantWindow,
    candidate: VariantWindow,
    shadow: ShadowWindow | None,
    policy: JudgePolicy,
) -> list[GateVerdict]:
    """Every gate's verdict on the candidate: latency, errors, predictions (left out when
    there is no shadow traffic and `policy.require_shadow` is off), slo."""
    verdicts = [latency_gate(baseline, candidate, policy), errors_gate(baseline, candidate, policy)]
    if shadow is not None or policy.require_shadow:
        verdicts.append(predictions_gate(shadow, policy))
    verdicts.append(slo_gate(candidate, policy))
    return verdicts


def combine(verdicts: Sequence[GateVerdict]) -> Outcome:
    """Any fail fails; else any inconclusive (or no verdict at all) is inconclusive."""
    outcomes = {verdict.outcome for verdict in verdicts}
    if "fail" in outcomes:
        return "fail"
    if "inconclusive" in outcomes or not outcomes:
        return "inconclusive"
    return "pass"


@lru_cache(maxsize=32)
def required_samples(policy: JudgePolicy) -> Mapping[str, int]:
    """Answers (latency, slo), requests (errors) or compared requests (predictions) each
    variant needs in the window before the gate can pass or fail.

    Each is the smallest n at which the gate's test reaches `policy.power` against the
    effect it must catch, at the Bonferroni alpha, with equal counts in both variants (a
    baseline with more traffic only adds power).
    """
    alpha, power = policy.test_alpha, policy.power
    tail = 1.0 - policy.tail_quantile
    detect = policy.detect_factor
    z = stats.norm.isf(alpha) + stats.norm.isf(1.0 - power)
    # Noether (1987): n per group for Mann-Whitney to detect P(C > B) = p at this power.
    shift_n = math.ceil(z**2 / (6.0 * (policy.latency_superiority - 0.5) ** 2))
    tail_n = smallest_n(lambda n: fisher_power(n, tail, detect * tail, alpha), power)
    # The error gate must catch errors on a candidate whose baseline has none (kayenta#426).
    errors_n = smallest_n(
        lambda n: fisher_power(n, 0.0, detect * policy.error_allowance, alpha), power
    )
    disagree = policy.allowed_disagreement
    disagree_n = smallest_n(lambda n: binomial_power(n, disagree, detect * disagree, alpha), power)
    # Two-sample KS: the n at which a distance of `score_shift_detect` becomes significant.
    ks_c = math.sqrt(-math.log(alpha / 2.0) / 2.0)
    ks_n = math.ceil(2.0 * (ks_c / policy.score_shift_detect) ** 2)
    slo_tail_n = smallest_n(lambda n: binomial_power(n, tail, detect * tail, alpha), power)
    limit = policy.max_error_rate
    slo_errors_n = smallest_n(lambda n: binomial_power(n, limit, detect * limit, alpha), power)
    needed = {
        "latency": max(shift_n, tail_n),
        "errors": errors_n,
        "predictions": max(disagree_n, ks_n),
        "slo": max(slo_tail_n, slo_errors_n),
    }
    return MappingProxyType(needed)  # cached and shared: read-only


def latency_gate(
    baseline: VariantWindow, candidate: VariantWindow, policy: JudgePolicy
) -> GateVerdict:
    """A shift (Mann-Whitney, Hodges-Lehmann) and a tail check (exceedances of the pooled
    p99, Fisher exact), so a candidate whose spread grows while its median stays put
    fails too (the gap of a rank test alone, kayenta#780)."""
    b = np.asarray(baseline.latencies_s, dtype=float)
    c = np.asarray(candidate.latencies_s, dtype=float)
    short = _too_few("latency", "answers", b.size, c.size, required_samples(policy)["latency"])
    if short is not None:
        return short
    alpha = policy.test_alpha
    shift_p = float(stats.mannwhitneyu(c, b, alternative="greater", method="asymptotic").pvalue)
    shift = hodges_lehmann(c, b)
    b_median = float(np.median(b))
    relative = shift / b_median if b_median > 0 else math.inf
    q = policy.tail_quantile
    threshold = float(np.quantile(np.concatenate([b, c]), q))
    c_above, b_above = int((c > threshold).sum()), int((b > threshold).sum())
    tail_p = _fisher_greater(c_above, c.size, b_above, b.size)
    b_tail, c_tail = float(np.quantile(b, q)), float(np.quantile(c, q))
    ratio = c_tail / b_tail if b_tail > 0 else math.inf
    figures = {
        "baseline_median_s": b_median,
        "shift_s": shift,
        "shift_relative": relative,
        "shift_p": shift_p,
        "baseline_tail_s": b_tail,
        "candidate_tail_s": c_tail,
        "tail_ratio": ratio,
        "tail_p": tail_p,
    }
    pct = f"p{q * 100:g}"
    shift_text = f"shift {shift * 1e3:+.3f} ms ({relative:+.0%}, Mann-Whitney p={shift_p:.2g})"
    tail_text = (
        f"{pct} ratio {ratio:.2f} ({c_tail * 1e3:.3f} vs {b_tail * 1e3:.3f} ms; "
        f"{c_above}/{c.size} vs {b_above}/{b.size} above pooled {pct}, Fisher p={tail_p:.2g})"
    )
    if (
        shift_p < alpha
        and relative > policy.max_latency_increase
        and shift > policy.min_latency_shift_s
    ):
        limit = f"> {policy.max_latency_increase:.0%} and p < {alpha:.3g}"
        return GateVerdict("latency", "fail", f"candidate slower: {shift_text} {limit}", figures)
    if (
        tail_p < alpha
        and ratio > policy.max_tail_ratio
        and c_tail - b_tail > policy.min_latency_shift_s
    ):
        limit = f"> {policy.max_tail_ratio:.2f} and p < {alpha:.3g}"
        return GateVerdict("latency", "fail", f"tail grew: {tail_text} {limit}", figures)
    return GateVerdict("latency", "pass", f"{shift_text}; {tail_text}", figures)


def errors_gate(
    baseline: VariantWindow, candidate: VariantWindow, policy: JudgePolicy
) -> GateVerdict:
    """Fisher's exact test on error and on shed counts: exact at any count, zero included,
    where a rank test on per-interval error rates sees nothing (kayenta#426)."""
    short = _too_few(
        "errors",
        "requests",
        baseline.requests,
        candidate.requests,
        required_samples(policy)["errors"],
    )
    if short is not None:
        return short
    figures: dict[str, float] = {}
    parts: list[str] = []
    failed: list[str] = []
    for kind in ("errors", "shed"):
        b_count, c_count = getattr(baseline, kind), getattr(candidate, kind)
        b_rate, c_rate = b_count / baseline.requests, c_count / candidate.requests
        p = _fisher_greater(c_count, candidate.requests, b_count, baseline.requests)
        figures |= {
            f"baseline_{kind}_rate": b_rate,
            f"candidate_{kind}_rate": c_rate,
            f"{kind}_p": p,
        }
        text = (
            f"{kind} {c_count}/{candidate.requests} ({c_rate:.2%}) vs "
            f"{b_count}/{baseline.requests} ({b_rate:.2%}), Fisher p={p:.2g}"
        )
        parts.append(text)
        if p < policy.test_alpha and c_rate - b_rate > policy.error_allowance:
            failed.append(text)
    if failed:
        limit = f"excess > {policy.error_allowance:.1%} and p < {policy.test_alpha:.3g}"
        return GateVerdict("errors", "fail", f"{'; '.join(failed)}: {limit}", figures)
    return GateVerdict("errors", "pass", "; ".join(parts), figures)


def predictions_gate(shadow: ShadowWindow | None, policy: JudgePolicy) -> GateVerdict:
    """Disagreement as a one-sided binomial test against the allowed rate, and the shift of
    the score distribution: two-sample KS for significance, PSI on fixed bins for size."""
    if shadow is None:
        return GateVerdict("predictions", "inconclusive", "no shadow comparisons yet", {})
    needed = required_samples(policy)["predictions"]
    if shadow.compared < needed:
        reason = f"{shadow.compared} of {needed} shadow comparisons needed"
        return GateVerdict("predictions", "inconclusive", reason, {"compared": shadow.compared})
    alpha = policy.test_alpha
    rate = shadow.disagreed / shadow.compared
    binom_p = float(
        stats.binomtest(
            shadow.disagreed, shadow.compared, policy.allowed_disagreement, alternative="greater"
        ).pvalue
    )
    b = np.asarray(shadow.baseline_scores, dtype=float)
    c = np.asarray(shadow.candidate_scores, dtype=float)
    ks = stats.ks_2samp(c, b, method="asymp")
    ks_d, ks_p = float(ks.statistic), float(ks.pvalue)
    index = psi(b, c, policy.score_bins)
    figures = {
        "compared": float(shadow.compared),
        "disagreement": rate,
        "disagreement_p": binom_p,
        "ks_distance": ks_d,
        "ks_p": ks_p,
        "psi": index,
    }
    agree_text = (
        f"disagreement {shadow.disagreed}/{shadow.compared} ({rate:.2%}, allowed "
        f"{policy.allowed_disagreement:.1%}, binomial p={binom_p:.2g})"
    )
    shift_text = f"scores PSI {index:.3f} (limit {policy.psi_limit}), KS D={ks_d:.3f} p={ks_p:.2g}"
    if binom_p < alpha:
        return GateVerdict("predictions", "fail", f"{agree_text} < {alpha:.3g}", figures)
    if ks_p < alpha and index > policy.psi_limit:
        return GateVerdict("predictions", "fail", f"score shift: {shift_text}", figures)
    return GateVerdict("predictions", "pass", f"{agree_text}; {shift_text}", figures)


def slo_gate(candidate: VariantWindow, policy: JudgePolicy) -> GateVerdict:
    """Absolute limits on the candidate alone, each a one-sided binomial test: the share of
    answers slower than the SLO against 1% (p99 over the SLO), and the error rate against
    its maximum. Shed requests are the errors gate's business: they follow load."""
    c = np.asarray(candidate.latencies_s, dtype=float)
    needed = required_samples(policy)["slo"]
    if c.size < needed or candidate.requests < needed:
        reason = f"{min(c.size, candidate.requests)} of {needed} candidate answers needed"
        return GateVerdict("slo", "inconclusive", reason, {"candidate": float(c.size)})
    alpha, q = policy.test_alpha, policy.tail_quantile
    slow = int((c > policy.slo_p99_s).sum())
    slow_p = float(stats.binomtest(slow, c.size, 1.0 - q, alternative="greater").pvalue)
    tail = float(np.quantile(c, q))
    rate = candidate.errors / candidate.requests
    error_p = float(
        stats.binomtest(
            candidate.errors, candidate.requests, policy.max_error_rate, alternative="greater"
        ).pvalue
    )
    figures = {"tail_s": tail, "slow_share": slow / c.size, "slow_p": slow_p, "error_rate": rate}
    figures["error_p"] = error_p
    pct = f"p{q * 100:g}"
    tail_text = (
        f"{pct} {tail * 1e3:.3f} ms (SLO {policy.slo_p99_s * 1e3:g} ms; {slow}/{c.size} "
        f"slower, binomial p={slow_p:.2g})"
    )
    error_text = (
        f"error rate {rate:.2%} (max {policy.max_error_rate:.1%}, binomial p={error_p:.2g})"
    )
    if slow_p < alpha:
        return GateVerdict("slo", "fail", f"{tail_text} over the SLO, p < {alpha:.3g}", figures)
    if error_p < alpha:
        return GateVerdict("slo", "fail", f"{error_text} over the limit, p < {alpha:.3g}", figures)
    return GateVerdict("slo", "pass", f"{tail_text}; {error_text}", figures)


def hodges_lehmann(candidate: np.ndarray, baseline: np.ndarray, points: int = 500) -> float:
    """Median of all candidate-minus-baseline differences: the shift Mann-Whitney tests.

    Large samples are first reduced to `points` evenly spaced quantiles each, which keeps
    the pairwise differences at 250,000 and the estimate within a fraction of a quantile
    step of the exact one.
    """
    c, b = _quantile_summary(candidate, points), _quantile_summary(baseline, points)
    return float(np.median(c[:, None] - b[None, :]))


def psi(baseline: np.ndarray, candidate: np.ndarray, bins: int) -> float:
    """Population stability index over `bins` equal-width bins spanning the baseline's
    range (outer bins open), fixed by the baseline so a candidate cannot move them.

    Empty bins count as 0.5 observations, the usual correction that keeps the log finite.
    """
    low, high = float(baseline.min()), float(baseline.max())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    b_counts = np.histogram(baseline, edges)[0] + 0.5
    c_counts = np.histogram(candidate, edges)[0] + 0.5
    b_share, c_share = b_counts / b_counts.sum(), c_counts / c_counts.sum()
    return float(np.sum((c_share - b_share) * np.log(c_share / b_share)))


def _quantile_summary(values: np.ndarray, points: int) -> np.ndarray:
    if values.size <= points:
        return values
    return np.asarray(np.quantile(values, (np.arange(points) + 0.5) / points))


def _too_few(
    gate: str, unit: str, baseline: int, candidate: int, needed: int
) -> GateVerdict | None:
    if min(baseline, candidate) >= needed:
        return None
    reason = f"{needed} {unit} per variant needed, have baseline {baseline}, candidate {candidate}"
    figures = {"baseline": float(baseline), "candidate": float(candidate), "needed": float(needed)}
    return GateVerdict(gate, "inconclusive", reason, figures)


def _fisher_greater(c_events: int, c_total: int, b_events: int, b_total: int) -> float:
    """One-sided Fisher exact p: the candidate has the larger share of events."""
    table = [[c_events, c_total - c_events], [b_events, b_total - b_events]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)

"""The rollout judge on synthetic windows: each gate catches its fault, noise passes, and too
little data never gives a verdict.

Latencies are log-normal (median 1 ms, sigma 0.5), the right-skewed shape server times
have; every draw is seeded so a run is repeatable, and windows hold exactly the samples
`required_samples` asks for, the least data on which the judge may decide.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from service.rollout.judge import (
    GateVerdict,
    JudgePolicy,
    Outcome,
    ShadowWindow,
    VariantWindow,
    combine,
    errors_gate,
    judge,
    predictions_gate,
    required_samples,
)

POLICY = JudgePolicy()
NEEDED = required_samples(POLICY)
N = max(NEEDED["latency"], NEEDED["errors"], NEEDED["slo"])


def latencies(rng: np.random.Generator, n: int = N) -> np.ndarray:
    return rng.lognormal(mean=np.log(0.001), sigma=0.5, size=n)


def variant(seconds: np.ndarray, errors: int = 0, shed: int = 0) -> VariantWindow:
    return VariantWindow(
        seconds.tolist(), requests=seconds.size + errors + shed, errors=errors, shed=shed
    )


def agreeing_shadow(rng: np.random.Generator, n: int = NEEDED["predictions"]) -> ShadowWindow:
    """Two conversions of one model: scores differ by rounding, labels never."""
    scores = rng.beta(0.3, 0.3, size=n)
    nudged = np.clip(scores + rng.normal(0, 1e-4, size=n), 0, 1)
    disagreed = int(((scores >= 0.5) != (nudged >= 0.5)).sum())
    return ShadowWindow(n, disagreed, scores.tolist(), nudged.tolist())


def verdict(verdicts: list[GateVerdict], gate: str) -> GateVerdict:
    return next(v for v in verdicts if v.gate == gate)


@pytest.mark.parametrize("seed", range(20))
def test_identical_variants_pass_every_gate(seed: int) -> None:
    """The false-fail guard: with Bonferroni at 0.01 per judgement and effect floors, 20
    seeded identical windows must all pass (perfserve/benchmarks/judge/judge_noise.py measures the
    rate)."""
    rng = np.random.default_rng(seed)
    verdicts = judge(variant(latencies(rng)), variant(latencies(rng)), agreeing_shadow(rng), POLICY)
    assert [v.gate for v in verdicts] == ["latency", "errors", "predictions", "slo"]
    assert combine(verdicts) == "pass", [v.reason for v in verdicts]


def test_a_latency_shift_fails_the_latency_gate() -> None:
    rng = np.random.default_rng(1)
    baseline, candidate = latencies(rng), latencies(rng) + 0.001
    result = verdict(judge(variant(baseline), variant(candidate), None, POLICY), "latency")
    assert result.outcome == "fail"
    assert result.reason.startswith("candidate slower")
    assert result.figures["shift_s"] == pytest.approx(0.001, rel=0.1)


def test_a_small_shift_under_the_absolute_floor_passes() -> None:
    """+20% of a 1 ms median is 0.2 ms: significant at this size, but under the 0.5 ms
    floor no user notices, so it must not roll back."""
    rng = np.random.default_rng(2)
    baseline, candidate = latencies(rng), latencies(rng) * 1.2
    result = verdict(judge(variant(baseline), variant(candidate), None, POLICY), "latency")
    assert result.figures["shift_p"] < POLICY.test_alpha
    assert result.outcome == "pass"


def test_a_wider_spread_with_the_same_median_fails_on_the_tail() -> None:
    """The case a rank test alone passes (kayenta#780): the candidate's answers above the
    median are stretched twice as far from it, the median does not move."""
    rng = np.random.default_rng(3)
    baseline, candidate = latencies(rng), latencies(rng)
    median = np.median(candidate)
    wider = candidate + np.maximum(candidate - median, 0.0)
    result = verdict(judge(variant(baseline), variant(wider), None, POLICY), "latency")
    assert result.outcome == "fail"
    assert result.reason.startswith("tail grew")
    assert result.figures["shift_relative"] < POLICY.max_latency_increase
    assert result.figures["tail_ratio"] > POLICY.max_tail_ratio


def test_errors_against_a_zero_error_baseline_fail() -> None:
    """kayenta#426: a baseline with no errors at all must not blind the test."""
    rng = np.random.default_rng(4)
    n = NEEDED["errors"]
    errors = 2 * int(n * POLICY.error_allowance) + 5
    result = verdict(
        judge(variant(latencies(rng, n)), variant(latencies(rng, n), errors=errors), None, POLICY),
        "errors",
    )
    assert result.outcome == "fail"
    assert result.figures["baseline_errors_rate"] == 0.0
    assert result.reason.startswith(f"errors {errors}/")


def test_a_single_error_does_not_fail() -> None:
    """One 500 is noise, not evidence: with enough requests the gate passes, with too few
    it is inconclusive."""
    rng = np.random.default_rng(5)
    n = NEEDED["errors"]
    baseline = variant(latencies(rng, 10 * n))
    enough = verdict(judge(baseline, variant(latencies(rng, n), errors=1), None, POLICY), "errors")
    assert enough.outcome == "pass"
    few = verdict(judge(baseline, variant(latencies(rng, 50), errors=1), None, POLICY), "errors")
    assert few.outcome == "inconclusive"


def test_shed_requests_count_like_errors() -> None:
    rng = np.random.default_rng(6)
    n = NEEDED["errors"]
    candidate = variant(latencies(rng, n), shed=n // 20)
    result = verdict(judge(variant(latencies(rng, n)), candidate, None, POLICY), "errors")
    assert result.outcome == "fail"
    assert result.reason.startswith("shed ")


def test_flipped_predictions_fail_the_predictions_gate() -> None:
    rng = np.random.default_rng(7)
    shadow = agreeing_shadow(rng)
    scores = np.asarray(shadow.candidate_scores)
    flipped = rng.random(scores.size) < 0.05
    candidate_scores = np.where(flipped, 1.0 - scores, scores)
    disagreed = int(
        ((np.asarray(shadow.baseline_scores) >= 0.5) != (candidate_scores >= 0.5)).sum()
    )
    bad = replace(shadow, disagreed=disagreed, candidate_scores=candidate_scores.tolist())
    result = verdict(
        judge(variant(latencies(rng)), variant(latencies(rng)), bad, POLICY), "predictions"
    )
    assert result.outcome == "fail"
    assert result.reason.startswith("disagreement")


def test_a_score_shift_with_the_same_labels_fails() -> None:
    """Every label agrees, yet the candidate's scores crowd towards the threshold: the
    calibration changed, which the disagreement count alone cannot see."""
    rng = np.random.default_rng(8)
    n = NEEDED["predictions"]
    baseline = rng.uniform(0.0, 0.45, size=n)
    candidate = np.minimum(baseline + 0.2, 0.49)
    shadow = ShadowWindow(n, 0, baseline.tolist(), candidate.tolist())
    result = verdict(
        judge(variant(latencies(rng)), variant(latencies(rng)), shadow, POLICY), "predictions"
    )
    assert result.outcome == "fail"
    assert result.reason.startswith("score shift")
    assert result.figures["psi"] > POLICY.psi_limit


def test_the_slo_gate_fails_a_slow_or_failing_candidate() -> None:
    rng = np.random.default_rng(9)
    slow = latencies(rng) * (1.2 * POLICY.slo_p99_s / 0.001)  # median over the SLO
    assert verdict(judge(variant(slow), variant(slow), None, POLICY), "slo").outcome == "fail"
    fast = latencies(rng)
    failing = variant(fast, errors=int(fast.size * 0.05))
    result = verdict(judge(variant(fast), failing, None, POLICY), "slo")
    assert result.outcome == "fail"
    assert "error rate" in result.reason


def test_too_few_samples_give_inconclusive_for_every_gate_even_when_blatant() -> None:
    """Below the required size no gate may pass or fail, even a candidate ten times slower
    with half its requests failing and every prediction flipped."""
    rng = np.random.default_rng(10)
    few = min(NEEDED.values()) - 1
    baseline = variant(latencies(rng, few))
    candidate = variant(latencies(rng, few // 2) * 10, errors=few - few // 2)
    scores = rng.uniform(size=few)
    shadow = ShadowWindow(few, few, scores.tolist(), (1.0 - scores).tolist())
    verdicts = judge(baseline, candidate, shadow, POLICY)
    assert {v.outcome for v in verdicts} == {"inconclusive"}
    assert len(verdicts) == 4
    assert combine(verdicts) == "inconclusive"


def test_without_shadow_traffic_predictions_are_inconclusive_unless_not_required() -> None:
    rng = np.random.default_rng(11)
    baseline, candidate = variant(latencies(rng)), variant(latencies(rng))
    assert (
        verdict(judge(baseline, candidate, None, POLICY), "predictions").outcome == "inconclusive"
    )
    optional = judge(baseline, candidate, None, replace(POLICY, require_shadow=False))
    assert [v.gate for v in optional] == ["latency", "errors", "slo"]
    assert combine(optional) == "pass"


def test_combine_fail_beats_inconclusive_beats_pass() -> None:
    def gate(outcome: Outcome) -> GateVerdict:
        return GateVerdict("latency", outcome, "", {})

    assert combine([gate("pass"), gate("inconclusive"), gate("fail")]) == "fail"
    assert combine([gate("pass"), gate("inconclusive")]) == "inconclusive"
    assert combine([gate("pass"), gate("pass")]) == "pass"
    assert combine([]) == "inconclusive"


def test_required_samples_follow_what_each_gate_tests() -> None:
    """A stricter alpha, a higher power or a smaller effect to detect all need more data."""
    stricter = required_samples(replace(POLICY, family_alpha=0.001))
    stronger = required_samples(replace(POLICY, power=0.95))
    finer = required_samples(replace(POLICY, detect_factor=2.0, score_shift_detect=0.05))
    for gate, n in NEEDED.items():
        assert n > 0
        assert stricter[gate] > n
        assert stronger[gate] >= n
        assert finer[gate] > n


@pytest.mark.parametrize("gate", ["errors", "predictions"])
def test_at_the_required_size_a_rate_test_has_its_stated_power(gate: str) -> None:
    """`required_samples` promises `power` (0.8) against a rate `detect_factor` times its
    limit; 300 seeded windows of exactly that size must catch it about that often (0.72
    is 3.5 standard deviations under 0.8)."""
    n = NEEDED[gate]
    limit = POLICY.error_allowance if gate == "errors" else POLICY.allowed_disagreement
    rng = np.random.default_rng(12)
    zeros = np.zeros(n).tolist()
    caught = 0
    for _ in range(300):
        events = int(rng.binomial(n, POLICY.detect_factor * limit))
        if gate == "errors":
            clean = VariantWindow([], requests=n, errors=0, shed=0)
            result = errors_gate(clean, replace(clean, errors=events), POLICY)
        else:
            result = predictions_gate(ShadowWindow(n, events, zeros, zeros), POLICY)
        caught += result.outcome == "fail"
    assert caught / 300 >= 0.72


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"family_alpha": 0.0}, "family_alpha"),
        ({"latency_superiority": 0.5}, "latency_superiority"),
        ({"error_allowance": 0.4}, "detect_factor x error_allowance"),
    ],
)
def test_a_policy_no_sample_size_can_satisfy_is_refused(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(named)} must be in"):
        replace(POLICY, **change)


def test_required_samples_cannot_be_changed_by_a_caller() -> None:
    """The mapping is cached per policy and shared by every caller."""
    with pytest.raises(TypeError):
        required_samples(POLICY)["latency"] = 1  # type: ignore[index]

"""Rounds interleaved across variants, against a stand-in server whose latency is known by
construction: a slower variant is ranked below, and two identical ones are not ranked.

The stand-in is each variant an M/M/1 queue (answer time exponential with mean
service / (1 - utilization), so p99 = service / (1 - utilization) x ln 100) on a machine
whose speed drifts, a random walk step by step that every variant shares, with a little
noise of its own in each step: the drift the interleaving is there to cancel, and the
noise the interval is there to show. The steps are computed, not served, so twenty whole
sweeps run in a second; the real sweep against real servers is in test_sweep.py."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from loadtests.report.headline import headline
from loadtests.report.outputs import summary
from loadtests.sweep.intervals import Verdict, every_pair
from loadtests.sweep.results import StepResult
from loadtests.sweep.rounds import RoundsPlan, run_rounds
from loadtests.sweep.runner import SweepPlan, SweepReport, TargetReport
from loadtests.sweep.steps import StepSettings
from tests.utils.sweep_steps import step

SLO_MS = 50.0
PLAN = RoundsPlan(rounds=5, start_rate=1000, max_rate=100_000, precision=0.1)


class StandIn:
    """Variants with known mean service times on one drifting machine."""

    def __init__(
        self, service_ms: dict[str, float], seed: int, drift: float = 0.03, noise: float = 0.03
    ) -> None:
        self.service_ms = service_ms
        self.rng = np.random.default_rng(seed)
        self.drift, self.noise = drift, noise
        self.speed = 1.0
        self.asked: list[tuple[str, float]] = []

    def p99_ms(self, variant: str, rate: float) -> float:
        """The p99 of the variant's queue at `rate` on the machine as it runs now."""
        service = self.service_ms[variant] / (self.speed * math.exp(self.rng.normal(0, self.noise)))
        utilization = rate * service / 1000
        return math.inf if utilization >= 1 else service / (1 - utilization) * math.log(100)

    def measure(self, variant: str, rate: float, round_number: int) -> StepResult:
        self.asked.append((variant, rate))
        self.speed = min(1.0, max(0.6, self.speed * math.exp(self.rng.normal(0, self.drift))))
        p99 = self.p99_ms(variant, rate)
        verdict = "holds" if p99 <= SLO_MS else "misses-slo"
        return replace(step(variant, rate, verdict, p99), round=round_number)


def sweep(service_ms: dict[str, float], seed: int) -> tuple[list[TargetReport], StandIn]:
    server = StandIn(service_ms, seed)
    rounds = run_rounds(list(service_ms), PLAN, server.measure, lambda _: None)
    return [TargetReport.from_rounds(t, r) for t, r in rounds.items()], server


def theory_knee(service_ms: float) -> float:
    """The rate at which the queue's p99 meets the SLO on the fastest machine."""
    return (1 - service_ms * math.log(100) / SLO_MS) / (service_ms / 1000)


def test_variants_take_turns_step_by_step_at_the_same_rates_in_the_first_round() -> None:
    _, server = sweep({"a": 0.1, "b": 0.1, "c": 0.1}, seed=1)
    names = [name for name, _ in server.asked]
    assert names[:9] == ["a", "b", "c"] * 3
    # The doubling offers every variant the same rates in the same minutes.
    assert [rate for _, rate in server.asked[:9]] == [1000] * 3 + [2000] * 3 + [4000] * 3


def test_each_knee_has_an_interval_from_its_rounds_around_the_theory() -> None:
    (target,), _ = sweep({"a": 0.1}, seed=2)
    interval = target.interval
    assert interval is not None and interval.method == "rounds" and interval.rounds == 5
    assert target.steps[0].round == 1 and target.steps[-1].round == 5
    knees = sorted(k for k in interval.round_knees_qps if k is not None)
    assert interval.low_qps == knees[0] and interval.high_qps == knees[-1]
    assert interval.qps == knees[2]  # the median of five
    assert target.knee.qps == interval.qps
    # The machine runs at 0.6 to 1.0 of its speed: the knee lies below the fastest's.
    assert 0.5 * theory_knee(0.1) <= knees[0] <= knees[-1] <= 1.05 * theory_knee(0.1)


def test_a_variant_20_percent_slower_is_ranked_below_every_time() -> None:
    for seed in range(20):
        reports, _ = sweep({"fast": 0.1, "slow": 0.125}, seed)
        (comparison,) = every_pair({t.target: t.rounds for t in reports})
        assert comparison.verdict == Verdict.LOWER, (seed, comparison)
        assert comparison.ci_high is not None and comparison.ci_high < 0
        truth = theory_knee(0.125) / theory_knee(0.1) - 1  # -20.2%
        assert comparison.ci_low is not None and comparison.ci_low < truth < comparison.ci_high


def test_two_identical_variants_are_not_ranked_in_at_least_19_of_20_sweeps() -> None:
    verdicts = []
    for seed in range(20):
        reports, _ = sweep({"a": 0.1, "b": 0.1}, seed)
        (comparison,) = every_pair({t.target: t.rounds for t in reports})
        verdicts.append(comparison.verdict)
        assert comparison.ci_low is not None and comparison.ci_high is not None
    assert verdicts.count(Verdict.NOT_DIFFERENT) >= 19


def report_of(service_ms: dict[str, float], seed: int) -> SweepReport:
    reports, _ = sweep(service_ms, seed)
    plan = SweepPlan(
        url="http://127.0.0.1:8000",
        targets=list(service_ms),
        rates=None,
        steps=StepSettings(slo_p99_ms=SLO_MS, step_seconds=3.0),
        store=Path("model_store"),
        rounds=PLAN.rounds,
    )
    report = SweepReport(plan, reports, conditions={})
    report.comparisons = every_pair({t.target: t.rounds for t in reports})
    return report


def test_the_top_sentence_says_when_two_variants_hold_the_same_load() -> None:
    document = summary(report_of({"onnx_fp32": 0.1, "onnx_int8": 0.1}, seed=3))
    (comparison,) = document["comparisons"]
    assert comparison["verdict"] == "not_different"
    assert set(comparison) >= {"baseline", "candidate", "difference", "ci_low", "ci_high"}
    first = headline(document)[0]
    width = max(abs(comparison["ci_low"]), abs(comparison["ci_high"]))
    assert first == (
        "onnx_fp32 and onnx_int8 hold the same load within this run's resolution, "
        f"±{width:.0%}, so they are not ranked."
    )
    # Each knee is given with its interval and rounds, in the order swept.
    assert headline(document)[1].startswith("onnx_fp32 holds ")
    assert " rounds) at p99 ≤ 50 ms on one replica" in headline(document)[1]


def test_the_top_sentence_ranks_a_variant_only_when_the_difference_is_real() -> None:
    document = summary(report_of({"fast": 0.1, "slow": 0.125}, seed=4))
    first = headline(document)[0]
    assert first.startswith("slow holds ") and " less load than fast (" in first
    assert "95% confidence, 5 interleaved rounds" in first

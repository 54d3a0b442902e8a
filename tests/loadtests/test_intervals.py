"""A knee's interval from its rounds, the comparison of two variants' knees round by round,
when a run is conclusive, and the exit code `--fail-on-miss` gives."""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy import stats

from loadtests.sweep.intervals import (
    Verdict,
    compare_knees,
    inconclusive_reason,
    knee_interval,
)
from loadtests.sweep.knee import Knee
from perfserve.cli.exit_codes import ExitCode as Exit
from perfserve.cli.sweep import sweep_exit


def slo(qps: float, ceiling: float) -> Knee:
    """A knee limited by the SLO: `qps` held, `ceiling` did not."""
    return Knee(qps, "slo", ceiling_qps=ceiling)


def test_the_knee_is_the_median_round_and_its_interval_the_range_of_the_rounds() -> None:
    interval = knee_interval([slo(10_400, 11_000), slo(9_600, 10_500), slo(11_200, 12_000)])
    assert (interval.qps, interval.low_qps, interval.high_qps) == (10_400, 9_600, 11_200)
    assert interval.method == "rounds" and interval.rounds == 3
    assert interval.median_round == 0
    assert interval.relative_width == pytest.approx(1_600 / 10_400)


def test_with_an_even_number_of_rounds_the_lower_median_is_reported() -> None:
    interval = knee_interval(
        [slo(1_000, 1_100), slo(1_200, 1_300), slo(900, 1_000), slo(1_100, 1_200)]
    )
    assert interval.qps == 1_000 and interval.median_round == 0


def test_one_round_gives_the_search_bracket() -> None:
    interval = knee_interval([slo(10_000, 11_000)])
    assert (interval.low_qps, interval.high_qps, interval.method) == (10_000, 11_000, "bracket")


def test_a_round_whose_knee_is_a_lower_bound_leaves_the_interval_open_above() -> None:
    bound = Knee(12_000, "generator", ceiling_qps=16_000)
    interval = knee_interval([slo(10_000, 11_000), bound, slo(10_500, 11_500)])
    assert interval.low_qps == 10_000 and interval.high_qps is None
    assert interval.relative_width is None


def test_a_round_where_nothing_held_pulls_the_low_end_to_none() -> None:
    interval = knee_interval(
        [Knee(None, "none-held", ceiling_qps=500), slo(900, 1_000), slo(950, 1_050)]
    )
    assert interval.qps == 900 and interval.low_qps is None and interval.high_qps == 950


def test_a_difference_the_same_in_every_round_is_called_with_its_bracket() -> None:
    base = [slo(10_000, 11_000)] * 3
    cand = [slo(7_000, 7_700)] * 3
    comparison = compare_knees("a", base, "b", cand)
    assert comparison.verdict == Verdict.LOWER
    # Both knees taken at the middle of their brackets; no spread between rounds, so the
    # interval is the resolution: half of the ratio's bracket either side.
    centre = math.log(math.sqrt(7_000 * 7_700) / math.sqrt(10_000 * 11_000))
    half = (math.log(7_700 / 10_000) - math.log(7_000 / 11_000)) / 2
    assert comparison.difference == pytest.approx(math.expm1(centre))
    assert comparison.ci_low == pytest.approx(math.expm1(centre - half))
    assert comparison.ci_high == pytest.approx(math.expm1(centre + half))
    assert compare_knees("b", cand, "a", base).verdict == Verdict.HIGHER


def test_the_interval_widens_with_the_rounds_spread_by_student_t() -> None:
    ratios = [1.30, 1.00, 1.15]
    base = [slo(10_000, 10_100)] * 3
    cand = [slo(10_000 * r, 10_100 * r) for r in ratios]
    comparison = compare_knees("a", base, "b", cand)
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert comparison.ci_low == pytest.approx(math.expm1(mean - half))
    assert comparison.ci_high == pytest.approx(math.expm1(mean + half))
    assert comparison.verdict == Verdict.NOT_DIFFERENT  # +15% on average, but not surely


def test_one_round_never_gives_a_verdict() -> None:
    comparison = compare_knees("a", [slo(10_000, 10_500)], "b", [slo(5_000, 5_250)])
    assert comparison.verdict == Verdict.NOT_DIFFERENT
    assert comparison.ci_high is not None and comparison.ci_high < 0


def test_a_lower_bound_knee_leaves_the_comparison_open_on_its_side() -> None:
    base = [slo(10_000, 11_000)] * 3
    cand = [Knee(12_000, "max-rate")] * 3
    comparison = compare_knees("a", base, "b", cand)
    assert comparison.ci_high is None and comparison.ci_low is not None
    assert comparison.verdict == Verdict.HIGHER
    # The other way round: lower, and with no end below (how much lower is unknown).
    assert compare_knees("b", cand, "a", base).verdict == Verdict.LOWER
    assert compare_knees("b", cand, "a", base).ci_low is None


def test_a_core_that_moved_between_rounds_more_than_the_intervals_is_inconclusive() -> None:
    narrow = {"onnx_int8": knee_interval([slo(10_000, 11_000), slo(10_500, 11_000)])}
    reason = inconclusive_reason(0.62, narrow)
    assert reason is not None
    assert (
        "0.62 of its fastest round's speed in its slowest round" in reason
        and "a move of 38%" in reason
    )
    assert "(onnx_int8 5%)" in reason
    # A move within the reading's own noise, or within the interval, is not.
    assert inconclusive_reason(0.93, narrow) is None
    wide = {"onnx_int8": knee_interval([slo(6_000, 7_000), slo(10_500, 11_000)])}
    assert inconclusive_reason(0.62, wide) is None
    assert inconclusive_reason(None, narrow) is None


def document(
    verdicts: list[str], knee: float | None, rates: str | list[float] = "auto"
) -> dict[str, Any]:
    steps = [{"phase": "sweep", "verdict": v} for v in verdicts]
    return {
        "conclusive": True,
        "settings": {"rates": rates},
        "variants": {"onnx_int8": {"knee_qps": knee, "steps": steps}},
    }


@pytest.mark.parametrize(
    ("verdicts", "knee", "rates", "code"),
    [
        (["holds", "misses-slo"], 1000, "auto", Exit.ANSWERED),
        (["misses-slo", "misses-slo"], None, "auto", Exit.NO),
        (["generator-bound", "generator-bound"], None, "auto", Exit.INCONCLUSIVE),
        (["holds", "holds"], 2000, [1000, 2000], Exit.ANSWERED),
        (["holds", "server-saturated"], 1000, [1000, 2000], Exit.NO),
        (["holds", "unstable"], 1000, [1000, 2000], Exit.INCONCLUSIVE),
    ],
)
def test_fail_on_miss_exits_by_what_the_server_did(
    verdicts: list[str], knee: float | None, rates: Any, code: Exit
) -> None:
    summary = document(verdicts, knee, rates)
    assert sweep_exit(summary, fail_on_miss=True) == code
    assert sweep_exit(summary, fail_on_miss=False) == Exit.ANSWERED


def test_fail_on_miss_exits_3_when_the_run_is_not_conclusive() -> None:
    summary = document(["holds", "misses-slo"], 1000) | {"conclusive": False}
    assert int(sweep_exit(summary, fail_on_miss=True)) == 3

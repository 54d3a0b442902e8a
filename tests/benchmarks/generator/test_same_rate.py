"""The same-rate comparison's rule: when two p99s agree, and which side fell behind."""

from __future__ import annotations

import math
from typing import Any

import pytest

from perfserve.benchmarks.generator.same_rate import SameRate, render


def sweep_step(**counts: Any) -> dict[str, Any]:
    step = {"warmup_p99_ms": 3.0, "late": 0, "late_sends": 0, "warmup_late": 0}
    step |= {"blocked": 0, "dropped": 0}
    return step | {"generator_late_share": 0.0} | counts


@pytest.mark.parametrize(
    ("ours", "theirs", "agrees"),
    [(3.0, 2.5, True), (4.4, 3.0, True), (4.6, 3.0, False), (1.4, 0.5, True), (1.6, 0.5, False)],
)
def test_two_p99s_agree_within_one_and_a_half_times_or_a_millisecond(
    ours: float, theirs: float, agrees: bool
) -> None:
    assert SameRate(1000, 1, ours, theirs, sweep_step(), 0.0).agrees is agrees
    assert SameRate(1000, 1, theirs, ours, sweep_step(), 0.0).agrees is agrees


def test_a_disagreement_names_the_side_that_fell_behind() -> None:
    late = SameRate(8000, 1, 25.0, 3.0, sweep_step(generator_late_share=0.05), 0.0)
    assert late.behind() == "the sweep's generator fell behind"
    waited = SameRate(8000, 1, 25.0, 3.0, sweep_step(blocked=120), 0.0)
    assert "waited for connections: the server fell behind" in waited.behind()
    theirs = SameRate(8000, 1, 3.0, 25.0, sweep_step(), 0.04)
    assert theirs.behind() == "openloop fell behind"
    assert "differ (openloop fell behind)" in theirs.line()
    own = SameRate(1000, 1, 4.2, 2.5, sweep_step(late=37, sent_p99_ms=2.9), 0.0)
    assert (
        own.behind() == "the sweep's own late sends: timed from its sends, its p99 (2.90 ms) agrees"
    )
    assert "sweep p99 4.20 ms (from its sends 2.90 ms;" in own.line()
    unexplained = SameRate(1000, 1, 4.2, 2.5, sweep_step(sent_p99_ms=4.1), 0.0)
    assert unexplained.behind().startswith("neither side counted itself late")


def test_a_late_sweep_does_not_explain_a_gap_where_openloop_read_higher() -> None:
    """The sweep's late or dropped sends raise its own p99; they cannot be why openloop's
    is the higher one (4,000/s, 14:49 UTC: sweep 5.1 ms with 117 dropped, openloop 29 ms)."""
    step = sweep_step(generator_late_share=0.05, dropped=117)
    higher_openloop = SameRate(4000, 2, 5.08, 29.30, step, 0.0)
    assert higher_openloop.behind() == (
        "openloop read the higher p99 and counted itself on time: the server was slower in its turn"
    )


def test_the_line_says_where_the_late_sends_fell() -> None:
    """Only the measured windows' late sends touch the step's p99; those of its warm-up,
    and those sent while it was being stopped, do not."""
    step = sweep_step(late=37, late_sends=2, warmup_late=5, sent_p99_ms=2.9)
    line = SameRate(1000, 1, 3.0, 2.5, step, 0.0).line()
    assert "late 2 measured (5 in the warm-up, 30 after)" in line


def test_the_summary_gives_medians_per_rate_and_how_often_they_agreed() -> None:
    results = [
        SameRate(1000, 1, 1.2, 1.0, sweep_step(), 0.0),
        SameRate(1000, 2, 1.4, 1.1, sweep_step(), 0.0),
        SameRate(1000, 3, 9.0, 1.2, sweep_step(), 0.0),
    ]
    last = render(results, "onnx_int8", 16).splitlines()[-1]
    assert last == (
        "  1,000/s medians of 3: sweep p99 1.40 ms, openloop 1.10 ms, ratio 1.27; agreed in 2 of 3"
    )


def test_a_step_with_no_measured_answer_shows_none_and_is_left_out_of_the_median() -> None:
    results = [
        SameRate(8000, 1, math.nan, 12.0, sweep_step(warmup_p99_ms=None), 0.1),
        SameRate(8000, 2, 30.0, 10.0, sweep_step(), 0.0),
    ]
    assert not results[0].agrees
    assert "sweep p99 none (from its sends none; warm-up p99 none;" in results[0].line()
    assert (
        render(results, "onnx_int8", 8)
        .splitlines()[-1]
        .startswith("  8,000/s medians of 2: sweep p99 30.00 ms, openloop 11.00 ms, ratio 2.73")
    )

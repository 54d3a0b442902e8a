"""The knee search: doubling, then bisection, and what the knee is among measured steps.

The measure function here is a rule, not a server: the search's logic is what is under
test (the real search against real servers is in test_sweep.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.knee import Knee, fixed_rates, knee_of, search
from loadtests.sweep.results import ClientSide, StepResult, Totals
from loadtests.sweep.server_metrics import ServerSplit

NAN = math.nan


def step(rate: float, verdict: str) -> StepResult:
    """A step at `rate` that got `verdict`; every other figure is a placeholder."""
    figures: dict[str, Any] = {f.name: 1.0 for f in fields(ClientSide)}
    client = ClientSide(**figures | {"achieved_qps": rate})
    unknown: dict[str, Any] = {f.name: NAN for f in fields(ServerSplit)}
    server = ServerSplit(**unknown | {"statuses": {}, "rejected": {}})
    return StepResult(
        "onnx_int8", 1, "sweep", rate, 5.0, 1.0, 4, client, Totals(), server,
        NAN, NAN, 0.1, 0.0, True, True, StepVerdict(verdict),
    )  # fmt: skip


def run(
    limit: float,
    start: float = 100,
    generator_limit: float = math.inf,
    first_time: dict[float, str] | None = None,
) -> tuple[list[float], Knee]:
    """Search against a rule that holds below `limit`; the rates asked for and the knee.
    A rate in `first_time` gets that verdict the first time it is measured."""
    asked: list[float] = []

    def measure(rate: float) -> StepResult:
        asked.append(rate)
        if rate >= generator_limit:
            return step(rate, "generator-bound")
        if first_time and rate in first_time and asked.count(rate) == 1:
            return step(rate, first_time[rate])
        return step(rate, "holds" if rate < limit else "misses-slo")

    return asked, knee_of(search(measure, start, max_rate=100_000, precision=0.1))


def test_doubles_until_a_step_fails_then_bisects_to_the_precision() -> None:
    asked, knee = run(limit=1000)
    assert asked[:5] == [100, 200, 400, 800, 1600]
    assert asked[5:] == [1200, 1000, 900, 950]
    assert knee.qps == 950 and knee.limited_by == "slo"
    assert knee.step is not None and knee.step.target_qps == 950


def test_halves_when_even_the_start_rate_fails() -> None:
    asked, knee = run(limit=30)
    assert asked[:3] == [100, 50, 25]
    assert knee.qps is not None and knee.qps < 30


def test_below_a_rate_the_generator_cannot_offer_the_search_bisects_to_a_lower_bound() -> None:
    # The server would hold 10,000/s; the generator falls behind from 800/s on.
    asked, knee = run(limit=10_000, generator_limit=800)
    assert asked == [100, 200, 400, 800, 800, 600, 700, 750]
    assert knee.qps == 750 and knee.limited_by == "generator" and knee.is_lower_bound


def test_below_a_rate_the_generator_cannot_offer_the_server_can_still_miss() -> None:
    # The generator falls behind from 800/s on, but the server misses from 650/s.
    asked, knee = run(limit=650, generator_limit=800)
    assert asked == [100, 200, 400, 800, 800, 600, 700, 650]
    assert knee.qps == 600 and knee.limited_by == "slo" and not knee.is_lower_bound


def test_a_start_rate_the_generator_cannot_offer_ends_the_search() -> None:
    asked, knee = run(limit=10_000, generator_limit=50)
    assert asked == [100, 100]
    assert knee.qps is None and knee.limited_by == "none-held"


def test_a_step_generator_bound_once_is_measured_again_before_the_search_goes_on() -> None:
    # A stall of the machine made the generator late in one step; the next try holds.
    asked, knee = run(limit=1000, first_time={800: "generator-bound"})
    assert asked[:6] == [100, 200, 400, 800, 800, 1600]
    assert knee.qps == 950 and knee.limited_by == "slo"


def test_an_unstable_step_is_measured_again_before_the_search_goes_on() -> None:
    asked, knee = run(limit=1000, first_time={400: "unstable"})
    assert asked[:5] == [100, 200, 400, 400, 800]
    assert knee.qps == 950


def test_a_step_that_stays_unstable_ends_the_search() -> None:
    steps = search(lambda r: step(r, "holds" if r < 200 else "unstable"), 100, 100_000)
    assert [s.target_qps for s in steps] == [100, 200, 200]
    knee = knee_of(steps)
    assert knee.qps == 100 and knee.limited_by == "unstable"


def test_the_knee_is_below_the_lowest_failure_even_if_a_higher_rate_held() -> None:
    steps = [step(100, "holds"), step(200, "misses-slo"), step(400, "holds")]
    assert knee_of(steps).qps == 100
    assert knee_of([step(100, "unstable")]).qps is None


def test_fixed_rates_stop_after_the_first_that_does_not_hold() -> None:
    measured = fixed_rates(
        lambda r: step(r, "holds" if r < 300 else "misses-slo"), [100, 200, 400, 800]
    )
    assert [s.target_qps for s in measured] == [100, 200, 400]
    assert knee_of(measured).limited_by == "slo"


def mm1_server(service_ms: float, slo_ms: float) -> Callable[[float], StepResult]:
    """A model server: one M/M/1 queue, whose answer time is exponential with mean
    service / (1 - utilization); a rate holds when that time's p99 is within the SLO."""

    def measure(rate: float) -> StepResult:
        utilization = rate * service_ms / 1000
        if utilization >= 1:
            return step(rate, "misses-slo")
        p99_ms = service_ms / (1 - utilization) * math.log(100)
        return step(rate, "holds" if p99_ms <= slo_ms else "misses-slo")

    return measure


def test_the_knee_moves_down_as_the_model_server_gets_slower_and_matches_the_theory() -> None:
    slo_ms = 25.0
    knees = {}
    for service_ms in (0.1, 0.2, 0.4):
        knee = knee_of(search(mm1_server(service_ms, slo_ms), 100, 100_000, precision=0.05))
        theory = (1 - service_ms * math.log(100) / slo_ms) / (service_ms / 1000)
        assert knee.qps is not None and knee.limited_by == "slo" and not knee.is_lower_bound
        assert theory * 0.95 <= knee.qps <= theory
        knees[service_ms] = knee.qps
    assert knees[0.1] > knees[0.2] > knees[0.4]

"""A step's verdict is judged from its measurement alone, and its result is built once
with it: who owns a miss, the server or the generator, on figures made by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadtests.sweep.acceptance import StepVerdict
from loadtests.sweep.judge import judge
from loadtests.sweep.results import StepMeasurement, step_result
from tests.utils.sweep_steps import step

SLO_MS = 50.0


def measured(
    rate: float = 1000.0,
    *,
    missed: bool = False,
    sent_share: float = 1.0,
    generator_cpu: float = 0.3,
    blocked: int = 0,
    utilization: float = 0.4,
    server_p99_ms: float = 5.0,
) -> StepMeasurement:
    """A settled step with enough answers; more than 1% missed when `missed`."""
    base = step("onnx_int8", rate, "misses-slo" if missed else "holds", 5.0, utilization)
    sent = rate * sent_share
    return StepMeasurement(
        step=7, phase="sweep", rate=rate, duration_s=5.0, window_s=1.0,
        client=replace(base.client, sent_qps=sent, achieved_qps=sent),
        points=[], totals=base.totals,
        server=replace(base.server, p99_ms_at_most=server_p99_ms),
        generator_cpu=generator_cpu, late_share=0.0, dropped=0, blocked=blocked,
        settled=True, enough_answers=True, rss_mb=[], core_rate=None, warmup_s=1.0,
        warmup=None,
    )  # fmt: skip


def test_a_step_that_kept_the_slo_holds() -> None:
    assert judge(measured(), SLO_MS) == StepVerdict.HOLDS


def test_a_miss_beside_a_generator_out_of_cpu_is_the_generators() -> None:
    assert judge(measured(missed=True, generator_cpu=0.95), SLO_MS) == StepVerdict.GENERATOR_BOUND


def test_a_busy_server_over_its_own_p99_owns_the_miss_however_busy_the_generator() -> None:
    busy = measured(missed=True, generator_cpu=0.95, utilization=0.9, server_p99_ms=80.0)
    assert judge(busy, SLO_MS) == StepVerdict.MISSES_SLO


def test_a_shortfall_is_the_servers_when_every_connection_waited_on_it() -> None:
    assert judge(measured(sent_share=0.5), SLO_MS) == StepVerdict.GENERATOR_BOUND
    waited = measured(sent_share=0.5, blocked=10)
    assert judge(waited, SLO_MS) == StepVerdict.SERVER_SATURATED


@pytest.mark.parametrize(
    ("ceiling_qps", "expected"),
    [
        (None, StepVerdict.MISSES_SLO),
        (2000.0, StepVerdict.MISSES_SLO),
        (1000.0, StepVerdict.GENERATOR_BOUND),  # 900/s is above 80% of it
    ],
)
def test_a_miss_near_the_calibrated_ceiling_is_the_generators(
    ceiling_qps: float | None, expected: StepVerdict
) -> None:
    assert judge(measured(900.0, missed=True), SLO_MS, ceiling_qps) == expected


def test_the_result_is_built_once_with_its_verdict_and_round() -> None:
    measurement = measured()
    result = step_result("onnx_int8", measurement, StepVerdict.HOLDS, "poisson", 3)
    assert result.verdict == StepVerdict.HOLDS and result.holds
    assert (result.step, result.round, result.target_qps, result.windows) == (7, 3, 1000.0, 0)
    assert result.client is measurement.client and result.server is measurement.server

"""The queueing model against textbook values."""

from __future__ import annotations

import math

from perfserve_common.queueing import erlang_c, little_disagreement, predicted_queue_s


def test_erlang_c_for_one_server_is_the_utilization() -> None:
    assert math.isclose(erlang_c(1, 0.7), 0.7)


def test_erlang_c_two_servers() -> None:
    # M/M/2 at a = 1 erlang: P(wait) = 1/3.
    assert math.isclose(erlang_c(2, 1.0), 1 / 3)


def test_erlang_c_saturated_and_large() -> None:
    assert erlang_c(3, 3.0) == 1.0  # saturated: everyone waits
    # Many servers stay finite (the recursion never forms a^c / c!).
    assert 0 <= erlang_c(500, 450.0) < 1


def test_md1_wait_is_half_the_mm1_wait() -> None:
    service, rho = 0.002, 0.8
    md1 = rho * service / (2 * (1 - rho))
    assert math.isclose(predicted_queue_s(rho, service, 1, arrival_cv2=1.0), md1)
    assert predicted_queue_s(rho, service, 1, arrival_cv2=0.0) == 0.0  # D/D/1 never waits
    assert predicted_queue_s(1.0, service) == math.inf


def test_little_disagreement() -> None:
    assert math.isclose(little_disagreement(1.1, 1.0, samples=20), 0.1)
    assert math.isnan(little_disagreement(1.0, 0.0, samples=20))
    # Three readings of a gauge that averages 0.35 are most often all 0: no verdict.
    assert math.isnan(little_disagreement(0.0, 0.35, samples=3))

"""Open-loop schedules: Poisson gaps look Poisson, generators share a rate exactly."""

from __future__ import annotations

from itertools import islice

import numpy as np

from loadtests.arrivals import arrival_times


def test_poisson_arrivals_have_the_rate_and_the_spread_of_a_poisson_process() -> None:
    times = np.array(list(islice(arrival_times(0.0, 500.0, "poisson", seed=1), 20_000)))
    gaps = np.diff(times)
    assert abs(len(times) / times[-1] - 500.0) < 500.0 * 0.03
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: CV = 1


def test_constant_arrivals_from_several_generators_interleave_evenly() -> None:
    merged = sorted(
        t
        for index in range(4)
        for t in islice(
            arrival_times(10.0, 100.0, "constant", generator_index=index, generators=4), 50
        )
    )
    assert np.allclose(np.diff(merged), 0.01)
    assert merged[0] == 10.0


def test_no_arrivals_at_rate_zero() -> None:
    assert list(arrival_times(0.0, 0.0, "poisson")) == []

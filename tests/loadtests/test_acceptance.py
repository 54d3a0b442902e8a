"""When a step is trusted, and the verdict it gets."""

from __future__ import annotations

from loadtests.sweep.acceptance import (
    WindowPoint,
    min_samples,
    miss_certain,
    settled,
    stable,
    verdict,
)


def test_p99_needs_about_460_answers_for_99_percent_confidence() -> None:
    assert min_samples(99.0, 0.99) == 459
    assert 0.99**459 <= 0.01 < 0.99**458
    assert min_samples(99.9, 0.99) == 4603


def test_a_miss_is_certain_once_the_longest_step_could_not_dilute_it() -> None:
    # 1,000/s for at most 10 s: at most 10,000 + 5 sd (500) requests, so 106 misses
    # already make more than 1% of any count the step could reach.
    assert miss_certain(106, rate=1000, longest_s=10)
    assert not miss_certain(105, rate=1000, longest_s=10)
    # Fewer misses than 1% of what has been sent so far is never certain.
    assert not miss_certain(50, rate=1000, longest_s=10)


def test_settled_within_ten_percent_or_an_absolute_margin() -> None:
    assert settled([100, 105, 109], 0.10)
    assert not settled([100, 105, 111], 0.10)
    assert settled([1.0, 3.0, 2.0], 0.10, absolute=5.0)
    assert not settled([1.0], 0.10)


def test_stability_looks_at_the_last_three_windows() -> None:
    # A slow first window keeps the step's p99 high, but it no longer moves.
    noisy_start = [WindowPoint(50, 90.0, 0.2, 90.0)]
    noisy_start += [WindowPoint(200, 4.0, 0.0, so_far) for so_far in (60.0, 55.0, 52.0)]
    assert stable(noisy_start, slo_ms=50.0, window_s=1.0)
    growing = [WindowPoint(200, 10.0 * 2**i, 0.0, 10.0 * 2**i) for i in range(4)]
    assert not stable(growing, slo_ms=50.0, window_s=1.0)


def test_the_steps_own_p99_settles_while_each_windows_swings() -> None:
    # A host that stalls now and then, at 1,000/s (figures from such a step): one
    # window's p99 swings from 2 to 24 ms, the step's p99 so far holds at 12-15 ms.
    swinging = [(14.2, 12.2), (1.9, 11.6), (17.3, 12.3), (23.7, 15.2)]
    windows = [WindowPoint(1000, p99, 0.0, so_far) for p99, so_far in swinging]
    assert stable(windows, slo_ms=50.0, window_s=1.0)
    assert not settled([w.p99_ms for w in windows[-3:]], 0.10, absolute=10.0)


def test_throughput_may_move_by_the_noise_of_poisson_arrivals() -> None:
    # 200 arrivals expected per window, sd 14: a range of 53 is under 4.5 sd.
    windows = [WindowPoint(q, 5.0, 0.0, 5.0) for q in (230.0, 177.0, 210.0)]
    assert stable(windows, slo_ms=50.0, window_s=1.0)
    assert not stable(windows, slo_ms=50.0, window_s=100.0)  # 20,000 expected: 3% noise


def judge(**changes: object) -> str:
    fields: dict[str, object] = dict(
        target_qps=400.0, achieved_qps=398.0, sent_qps=401.0, miss_ratio=0.002,
        late_share=0.0, dropped=0, server_saturated=False, settled=True, enough_answers=True,
    )  # fmt: skip
    fields.update(changes)
    return verdict(**fields)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert judge() == "holds"
    assert judge(miss_ratio=0.02, server_saturated=True) == "misses-slo"
    assert judge(sent_qps=300.0, achieved_qps=300.0) == "generator-bound"
    assert judge(late_share=0.3, miss_ratio=0.05) == "generator-bound"
    # Missed only through late sends: from the send, the answers held.
    assert judge(miss_ratio=0.05, late_share=0.045, sent_miss_ratio=0.005) == "generator-bound"
    assert judge(miss_ratio=0.05, late_share=0.045, sent_miss_ratio=0.04) == "misses-slo"
    # Far more misses than own late sends: the rest waited for a connection the server
    # held, so a stall of the server is not charged to the generator.
    assert judge(miss_ratio=0.05, late_share=0.001, sent_miss_ratio=0.005) == "misses-slo"
    assert judge(miss_ratio=0.05) == "misses-slo"
    assert judge(miss_ratio=0.05, generator_saturated=True) == "generator-bound"
    # A generator out of breath is blamed, even beside a busy server, unless the server
    # failed by its own measure (its own p99 over the SLO, or it shed).
    assert judge(miss_ratio=0.05, generator_saturated=True, server_saturated=True) == (
        "generator-bound"
    )
    assert judge(miss_ratio=0.05, beyond_ceiling=True, server_saturated=True) == "generator-bound"
    saturated_and_slow = dict(server_saturated=True, server_failed=True)
    assert judge(miss_ratio=0.05, generator_saturated=True, **saturated_and_slow) == "misses-slo"
    assert judge(miss_ratio=0.05, late_share=0.3, server_failed=True) == "generator-bound"
    assert judge(beyond_ceiling=True) == "holds"
    assert judge(late_share=0.3) == "holds"
    assert judge(sent_qps=300.0, achieved_qps=300.0, server_saturated=True) == "server-saturated"
    assert judge(achieved_qps=350.0) == "server-saturated"
    assert judge(settled=False) == "unstable"
    assert judge(enough_answers=False) == "too-few-answers"

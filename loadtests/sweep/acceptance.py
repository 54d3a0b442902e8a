"""When a step's numbers can be trusted, and whether they hold the SLO.

A step is trusted when its throughput and its p99 so far have settled (over the last
windows, max/min within a tolerance) and it has enough answers for the percentile it reports:
with n answers and none beyond the true p99, one is only (1 - 0.99**n) sure the p99
was not missed by chance, so p99 needs about 460 answers for 99% confidence, p99.9
about 4,600. A step *holds* the SLO when at most 1% of its requests were slower than
the SLO or failed (a failure counts as infinitely slow, so shedding cannot buy a good
p99), nothing was dropped and the achieved rate is within tolerance of the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

STABLE_WINDOWS = 3
STABILITY_TOLERANCE = 0.10
P99_SLO_MARGIN = 0.20
ARRIVAL_NOISE_SIGMAS = 4.5
RATE_TOLERANCE = 0.05
"""Achieved within 5% of the target counts as delivering the target."""
LATE_SHARE_LIMIT = 0.10
"""More sends than this behind schedule means the generator is not keeping up."""
SATURATION = 0.85
"""A server resource busier than this is saturated."""
MISS_LIMIT = 0.01
"""The SLO's share of requests that may be slower than its p99 bound (or fail)."""
ARRIVAL_BOUND_SIGMAS = 5.0
"""How far a step's arrivals may run above its rate when bounding its request count, in
standard deviations of a Poisson count (sqrt(n) for n expected): further than that
about once in a million steps."""


def min_samples(percentile: float = 99.0, confidence: float = 0.99) -> int:
    """Answers needed so that seeing none beyond the percentile is `confidence`-sure."""
    return math.ceil(math.log(1 - confidence) / math.log(percentile / 100))


def settled(values: Sequence[float], tolerance: float, absolute: float = 0.0) -> bool:
    """max - min within `tolerance` of the min (or within `absolute`, whichever is wider)."""
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return False
    low, high = min(values), max(values)
    return high - low <= max(tolerance * low, absolute)


class StepVerdict(StrEnum):
    """What one step says of the server (loadtests/sweep/acceptance.py decides it)."""

    HOLDS = "holds"
    MISSES_SLO = "misses-slo"
    """More than 1% of answers slower than the SLO or failed, or arrivals dropped."""
    SERVER_SATURATED = "server-saturated"
    """The server fell short of the rate."""
    GENERATOR_BOUND = "generator-bound"
    """The load generator fell behind: the step measured it, not the server."""
    UNSTABLE = "unstable"
    """Throughput or p99 did not settle within the step's longest length."""
    TOO_FEW_ANSWERS = "too-few-answers"
    """Too few answers for a p99."""


@dataclass(frozen=True)
class WindowPoint:
    throughput: float
    p99_ms: float
    miss_ratio: float
    p99_so_far_ms: float
    """The p99 of the step from its first measured window through this one: what the
    step would report if it ended here."""


def miss_certain(misses: int, rate: float, longest_s: float) -> bool:
    """Whether a step has already missed the SLO whatever its remaining windows bring.

    A step misses when more than 1% of its requests were slower than the SLO or failed.
    It can count at most the arrivals of its longest length (`rate` for `longest_s`,
    and `ARRIVAL_BOUND_SIGMAS` more for Poisson arrivals running ahead), so once its misses
    so far exceed 1% of that, no answer still to come can bring it back under: waiting
    for it to settle only spends time. In the demo, steps far past the SLO (p99 of
    hundreds of milliseconds in every window) spent 70 to 105 s a run settling."""
    expected = rate * longest_s
    most_requests = expected + ARRIVAL_BOUND_SIGMAS * math.sqrt(expected)
    return misses > MISS_LIMIT * most_requests


def stable(windows: Sequence[WindowPoint], slo_ms: float, window_s: float) -> bool:
    """Throughput, window by window, and the step's p99 so far settled over the last
    `STABLE_WINDOWS` windows.

    Throughput may also move by the noise of the arrivals themselves: a window that
    should hold n Poisson arrivals holds n ± sqrt(n), and the range of three such
    windows exceeds 4.5 standard deviations less than 1% of the time, so that much is
    allowed (at 200/s in 1 s windows 32%, at 10,000/s 4.5%).

    The p99 asked to settle is the step's own, over all its measured windows so far,
    not each window's: that is the figure the step reports, and it has settled when
    more windows no longer move it. One window's p99 rests on its ten or so slowest
    answers, and on a host that stalls for milliseconds now and then it swings between
    1 and 24 ms from one second to the next at 1,000/s with the server 5% busy, so a
    step judged window by window never settles. A tail that grows still moves the
    step's p99, since its slowest answers come from the latest windows. It may move by
    up to a fifth of the SLO: what matters is the distance to the SLO, not a
    millisecond of timer noise."""
    last = windows[-STABLE_WINDOWS:]
    if len(last) < STABLE_WINDOWS:
        return False
    throughputs = [w.throughput for w in last]
    expected = sum(throughputs) / len(throughputs) * window_s
    noise = ARRIVAL_NOISE_SIGMAS / math.sqrt(expected) if expected > 0 else 1.0
    return settled(throughputs, max(STABILITY_TOLERANCE, noise)) and settled(
        [w.p99_so_far_ms for w in last], STABILITY_TOLERANCE, slo_ms * P99_SLO_MARGIN
    )


def verdict(
    *,
    target_qps: float,
    achieved_qps: float,
    sent_qps: float,
    miss_ratio: float,
    late_share: float,
    dropped: int,
    server_saturated: bool,
    settled: bool,
    enough_answers: bool,
    sent_miss_ratio: float = 0.0,
    generator_saturated: bool = False,
    beyond_ceiling: bool = False,
    server_failed: bool = False,
) -> StepVerdict:
    """One of: holds, generator-bound, misses-slo, server-saturated, unstable (did not
    settle), too-few-answers (not enough for a trustworthy p99).

    A step that fell short (sends short of target, dropped arrivals) or missed the SLO
    is the generator's when the generator was out of breath by its own evidence: out of
    CPU (`generator_saturated`, which delays reading answers too), sending behind
    schedule by its own doing (`late_share`, sends that waited for a connection left
    out), above its calibrated ceiling (`beyond_ceiling`), or missing only through its
    late sends (timed from the send, at most 1% missed: `sent_miss_ratio`; and enough
    of its own late sends to account for the misses). The server
    may then have held more, and the knee is only a lower bound. Unless the server was
    saturated and failed by its own measure (`server_failed`: its own p99 over the SLO,
    or it shed): that tail is the server's, however busy the generator was. A step that
    fell short while the server was not saturated is the generator's too. Time lost
    after a timely send is the server's: a server starved of CPU leaves requests in its
    socket before its own clock starts, so its own p99 can hold while users wait.
    """
    could_not_offer = dropped > 0 or sent_qps < (1 - RATE_TOLERANCE) * target_qps
    missed = miss_ratio > MISS_LIMIT
    # Each miss that late sends explain has a late send behind it: misses beyond the own
    # late sends by more than the SLO's 1% waited for a busy connection, the server's doing.
    missed_by_lateness = (
        missed and late_share > 0 and sent_miss_ratio <= 0.01 and miss_ratio - late_share <= 0.01
    )
    out_of_breath = (
        generator_saturated or late_share > LATE_SHARE_LIMIT or beyond_ceiling
        or missed_by_lateness
    )  # fmt: skip
    servers_own = server_saturated and server_failed
    if (could_not_offer or missed) and out_of_breath and not servers_own:
        return StepVerdict.GENERATOR_BOUND
    if could_not_offer and not server_saturated:
        return StepVerdict.GENERATOR_BOUND
    if missed or dropped > 0:
        return StepVerdict.MISSES_SLO
    if achieved_qps < (1 - RATE_TOLERANCE) * target_qps:
        return StepVerdict.SERVER_SATURATED
    if not settled:
        return StepVerdict.UNSTABLE
    if not enough_answers:
        return StepVerdict.TOO_FEW_ANSWERS
    return StepVerdict.HOLDS

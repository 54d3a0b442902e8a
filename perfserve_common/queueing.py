"""Queueing theory beside the measurements: what the queue delay *should* be at a load.

The model is M/D/c-like, through the Allen-Cunneen approximation for a G/G/c queue:

    Wq ≈ P_wait(c, a) · S / (c · (1 - rho)) · (Ca² + Cs²) / 2

with c runners (one model call at a time each), rho the runners' utilization, a = c·rho
the offered work, P_wait the Erlang C probability that an arrival has to wait, Ca² the
squared coefficient of variation of the arrival gaps (1 for Poisson, 0 for constant),
and Cs² = 0 for the service: a model call on a fixed-size input takes a nearly fixed
time (M/D/c). Batching enters through S: an arrival that has to wait waits for the
batch in progress, so S is the measured time of one *batch*, not of one request;
with batches of one row this is the textbook M/D/c. Measured and predicted disagree
where the runner is not where requests wait, e.g. when the event loop parsing HTTP
is the busier resource: the report shows both so the gap is visible.

Little's law (L = λ·W) needs no model: the server's time-averaged in-flight count must
equal its throughput times its mean latency; a disagreement points at a measurement
problem, not at the server.
"""

from __future__ import annotations

import math

SERVICE_CV2 = 0.0
"""A model call on a fixed-size input takes a nearly fixed time: deterministic service."""


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with `offered` = λ·S erlangs."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    # The Erlang B recursion is numerically stable for any number of servers.
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    rho = offered / servers
    return blocking / (1 - rho + rho * blocking)


def predicted_queue_s(
    utilization: float, service_s: float, servers: int = 1, arrival_cv2: float = 1.0
) -> float:
    """Mean wait before service (seconds); infinite at or past full utilization."""
    if utilization >= 1:
        return math.inf
    if utilization <= 0 or service_s <= 0:
        return 0.0
    wait_mmc = erlang_c(servers, servers * utilization) * service_s / (servers * (1 - utilization))
    return wait_mmc * (arrival_cv2 + SERVICE_CV2) / 2


LITTLE_MIN_COUNTED = 16.0
"""Requests in flight that a step's gauge samples must count in all, at Little's level,
before the two can be compared: the mean of n samples of a count whose mean is L is
itself off by about 1/√(L·n) (Poisson), more than 25% below 16. At 500 requests/s of
0.7 ms each, L is 0.35, and three samples of 0 are likely: -100% that means nothing."""


def little_disagreement(
    sampled_in_flight: float, throughput_times_latency: float, samples: int
) -> float:
    """(sampled L - λW) / λW: 0 when the two measurements agree; NaN when `samples`
    readings of the gauge are too few to tell (`LITTLE_MIN_COUNTED`)."""
    counted = throughput_times_latency * samples
    if not counted or counted < LITTLE_MIN_COUNTED or math.isnan(sampled_in_flight):
        return float("nan")
    return (sampled_in_flight - throughput_times_latency) / throughput_times_latency

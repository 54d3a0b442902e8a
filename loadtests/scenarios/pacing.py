"""Per-user pacing for Locust scenarios: each user follows its own arrival schedule.

Locust users are closed loops: a user waits for an answer before its next request. A
pacing schedule makes each user aim at fixed (or Poisson) send times instead, and the
latency is measured from the time the request was *due*: if the server stalls, the
requests a user could not send in time are measured as late, not silently skipped
(the correction wrk2 makes).
"""

from __future__ import annotations

import time

from loadtests.arrivals import ArrivalProcess, arrival_times

LATE_TOLERANCE_S = 0.005
"""A send later than this behind schedule counts as a late arrival (timer jitter on a
busy machine is a few milliseconds)."""


class Pacer:
    """The schedule of one user: `due` is when the current request should have gone out."""

    def __init__(self, rate: float, process: ArrivalProcess, seed: int | None = None) -> None:
        self.rate = rate
        self.due = time.perf_counter()
        self._times = arrival_times(self.due, rate, process, seed=seed)

    def wait(self) -> float:
        """Move to the next scheduled request; seconds to sleep until it is due (0 if late)."""
        self.due = next(self._times)
        return max(0.0, self.due - time.perf_counter())

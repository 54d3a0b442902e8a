"""Open-loop arrival schedules: when each request *should* be sent, decided in advance.

A closed-loop generator sends the next request when the previous answer arrives, so a
slow server slows the generator down and the queueing it would have caused never
happens (coordinated omission). Here the send times are drawn up front, independent of
the answers: Poisson arrivals (exponential gaps, what many independent users produce)
or constant ones (a fixed gap). Several generator processes share one rate: each draws
at `rate / generators`; independent Poisson streams add up to a Poisson stream of the
whole rate, and constant streams are offset so their merge is evenly spaced again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

ArrivalProcess = Literal["poisson", "constant"]
ARRIVAL_PROCESSES: tuple[ArrivalProcess, ...] = ("poisson", "constant")


def arrival_times(
    start: float,
    rate: float,
    process: ArrivalProcess,
    *,
    generator_index: int = 0,
    generators: int = 1,
    seed: int | None = None,
) -> Iterator[float]:
    """Endless scheduled send times (same clock as `start`) for one generator's share."""
    if rate <= 0:
        return
    own_rate = rate / generators
    if process == "constant":
        gap = 1.0 / own_rate
        first = start + generator_index / rate
        n = 0
        while True:
            yield first + n * gap
            n += 1
    rng = np.random.default_rng(seed)
    at = start
    while True:
        for gap in rng.exponential(1.0 / own_rate, 1024):
            at += float(gap)
            yield at


def squared_cv(process: ArrivalProcess) -> float:
    """Squared coefficient of variation of the gaps: 1 for Poisson, 0 for constant."""
    return 1.0 if process == "poisson" else 0.0

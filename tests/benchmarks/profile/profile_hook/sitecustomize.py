"""A test build of the server whose answer encoder does 100 µs more work per request.

Put on a server's PYTHONPATH (tests/benchmarks/profile/test_profile_command.py), Python imports
it at start-up; it wraps the helper `service.payload.jsonable` that
`service.payload.encode_prediction` calls for each array of the answer, so the extra work
runs inside the encoder's own frame, as a slower encoder would. The work is a fixed amount
of arithmetic, sized at start-up to take 50 µs of CPU per call (the fastest of several
timings, so a busy core does not shrink it), and the encoder calls the helper twice per
answer (labels, probabilities). 20 µs per request did not always clear the noise bound of
ten repeats on a loaded 2-core machine (it read +11 µs once, under the bound); 100 µs
does by a wide margin. Nothing in the shipped code knows of it.
"""

from __future__ import annotations

import time
from typing import Any

import service.payload

EXTRA_S_PER_CALL = 50e-6
PROBE_ROUNDS = 2_000


def _work(rounds: int) -> int:
    total = 0
    for number in range(rounds):
        total += number * number
    return total


def _rounds_for(seconds: float) -> int:
    fastest = min(_timed(PROBE_ROUNDS) for _ in range(30))
    return max(1, round(PROBE_ROUNDS * seconds / fastest))


def _timed(rounds: int) -> float:
    started = time.thread_time()
    _work(rounds)
    return time.thread_time() - started


ROUNDS = _rounds_for(EXTRA_S_PER_CALL)
_original = service.payload.jsonable


def _slow_jsonable(array: Any) -> Any:
    _work(ROUNDS)
    return _original(array)


service.payload.jsonable = _slow_jsonable

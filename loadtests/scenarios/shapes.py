"""Load shapes for the Locust scenarios: steps, a ramp, a spike.

Each is a small class whose parameters are class attributes; `tick()` returns
`(users, spawn_rate)` while the shape runs and None when it is over, which stops the
run. With paced users, users times `--user-rps` is the offered rate, so a shape in users
is a shape in requests per second.

Pick one for a plain Locust run with `PERFSERVE_SHAPE=steps|ramp|spike`; override a
parameter with `PERFSERVE_SHAPE_<ATTRIBUTE>` (e.g. `PERFSERVE_SHAPE_STEP_SECONDS=10`),
or subclass in your own locustfile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from locust import LoadTestShape


class _Shape(LoadTestShape):
    abstract = True

    def elapsed(self) -> float:
        """Seconds since the shape started (Locust's own `get_run_time`, typed)."""
        return time.perf_counter() - self.start_time


class StepShape(_Shape):
    """A staircase: `step_users` more users every `step_seconds`, for `steps` steps."""

    step_users = 10
    step_seconds = 30.0
    steps = 5
    spawn_rate = 50.0

    def tick(self) -> tuple[int, float] | None:
        step = int(self.elapsed() // self.step_seconds)
        if step >= self.steps:
            return None
        return (step + 1) * self.step_users, self.spawn_rate


class RampShape(_Shape):
    """From `start_users` to `end_users` linearly over `ramp_seconds`, then hold."""

    start_users = 1
    end_users = 50
    ramp_seconds = 60.0
    hold_seconds = 30.0
    spawn_rate = 50.0

    def tick(self) -> tuple[int, float] | None:
        run_time = self.elapsed()
        if run_time >= self.ramp_seconds + self.hold_seconds:
            return None
        progress = min(1.0, run_time / self.ramp_seconds)
        users = self.start_users + progress * (self.end_users - self.start_users)
        return round(users), self.spawn_rate


class SpikeShape(_Shape):
    """`base_users`, a sudden spike to `spike_users`, then back to base to watch recovery."""

    base_users = 5
    spike_users = 50
    base_seconds = 20.0
    spike_seconds = 10.0
    recover_seconds = 20.0
    spawn_rate = 1000.0

    def tick(self) -> tuple[int, float] | None:
        run_time = self.elapsed()
        if run_time < self.base_seconds:
            return self.base_users, self.spawn_rate
        if run_time < self.base_seconds + self.spike_seconds:
            return self.spike_users, self.spawn_rate
        if run_time < self.base_seconds + self.spike_seconds + self.recover_seconds:
            return self.base_users, self.spawn_rate
        return None


SHAPES: dict[str, type[LoadTestShape]] = {
    "steps": StepShape,
    "ramp": RampShape,
    "spike": SpikeShape,
}


def shape_from_env(environ: Mapping[str, str] = os.environ) -> type[LoadTestShape] | None:
    """The shape `PERFSERVE_SHAPE` names, with `PERFSERVE_SHAPE_*` overrides; None if unset.

    A ValueError names the variable, its bad value and what is allowed."""
    name = environ.get("PERFSERVE_SHAPE", "").strip().lower()
    if not name:
        return None
    if name not in SHAPES:
        raise ValueError(f"PERFSERVE_SHAPE={name!r}: choose one of {', '.join(SHAPES)}")
    base = SHAPES[name]
    overrides: dict[str, object] = {}
    for attribute, default in vars(base).items():
        value = environ.get(f"PERFSERVE_SHAPE_{attribute.upper()}")
        if value is not None and isinstance(default, int | float):
            try:
                overrides[attribute] = type(default)(value)
            except ValueError:
                kind = "an integer" if isinstance(default, int) else "a number"
                raise ValueError(
                    f"PERFSERVE_SHAPE_{attribute.upper()}={value!r}: must be {kind}"
                ) from None
    return type(base.__name__, (base,), overrides)

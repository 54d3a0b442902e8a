"""What a rollout is asked to do (the plan) and what it did (its state and decisions).

Both are plain pydantic models so they travel as JSON: the plan in `POST /rollout/start`,
the state in the shared folder every replica reads and in `GET /rollout/status`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import fields
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from service.rollout.judge import JudgePolicy

OnFail = Literal["rollback", "pause"]
Status = Literal["running", "paused", "promoted", "rolled_back", "aborted", "dry_run_done"]
FINISHED: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "dry_run_done"})
DEFAULT_STEPS = (1.0, 5.0, 20.0, 50.0, 100.0)
CONTROLLER_STALE_S = 5.0
"""A controller that has not written the state for this long is presumed gone: the
rollout shows as stale, and a command sent to any replica takes it over."""
Controller = Literal["alive", "stale", "done"]


class RolloutPlan(BaseModel):
    """A canary from `baseline` to `candidate` through rising weights (percent).

    Every step but a final 100 is judged; passing the last judged step promotes the
    candidate to 100% (with the whole traffic on it there is no baseline left to compare
    with in the same window)."""

    baseline: str = Field(min_length=1)
    candidate: str = Field(min_length=1)
    steps: list[float] = Field(default_factory=lambda: list(DEFAULT_STEPS), min_length=1)
    """Candidate weights in percent, rising, each in (0, 100]."""
    window_seconds: float = Field(60.0, gt=0, le=3600)
    """Longest one analysis window waits for the samples every gate needs; judged at once
    when they are all there, and judged anyway (inconclusive) when it runs out."""
    max_extensions: int = Field(2, ge=0, le=100)
    """Windows an inconclusive step may be extended by before it pauses for a person."""
    on_fail: OnFail = "rollback"
    dry_run: bool = False
    """Judge and report each step without changing the split."""
    policy: dict[str, float] = Field(default_factory=dict)
    """Judge thresholds that differ from the judge's defaults (`JudgePolicy` fields)."""

    @field_validator("steps")
    @classmethod
    def _rising_percentages(cls, steps: list[float]) -> list[float]:
        if any(not 0 < step <= 100 for step in steps):
            raise ValueError(f"steps are percentages in (0, 100], not {steps}")
        if any(later <= earlier for earlier, later in pairwise(steps)):
            raise ValueError(f"steps must rise, not {steps}")
        return steps

    @field_validator("policy")
    @classmethod
    def _usable_thresholds(cls, policy: dict[str, float]) -> dict[str, float]:
        """Known names, and values the judge accepts (it raises ValueError naming the
        field), so a bad policy is refused with the plan, not when the rollout starts."""
        known = {field.name for field in fields(JudgePolicy)}
        unknown = sorted(set(policy) - known)
        if unknown:
            raise ValueError(f"unknown judge setting(s) {unknown}; known: {sorted(known)}")
        for name, value in policy.items():
            if type(_default(name)) is int and not float(value).is_integer():
                raise ValueError(f"{name} must be a whole number, got {value:g}")
        policy_of(policy)
        return policy

    def judge_policy(self) -> JudgePolicy:
        """The judge's policy with `policy` applied, each value in its field's type."""
        return policy_of(self.policy)

    @model_validator(mode="after")
    def _two_variants(self) -> RolloutPlan:
        if self.baseline == self.candidate:
            raise ValueError("baseline and candidate must be different variants")
        return self

    @property
    def judged_steps(self) -> list[float]:
        """The steps that are judged: all but a final 100."""
        return self.steps[:-1] if self.steps[-1] == 100 else list(self.steps)


def policy_of(policy: dict[str, float]) -> JudgePolicy:
    """The judge's defaults with `policy` applied, each value in its field's type."""
    return JudgePolicy(**{name: type(_default(name))(value) for name, value in policy.items()})


def _default(name: str) -> Any:
    return next(field.default for field in fields(JudgePolicy) if field.name == name)


class GateRecord(BaseModel):
    """One gate's verdict as the state shows it."""

    gate: str
    outcome: str
    reason: str
    figures: dict[str, float]


class Decision(BaseModel):
    """One line of the rollout's log: what was decided, when, and why."""

    at: float
    step: int
    weight: float
    action: str
    """start, pass, fail, inconclusive, advance, extend, pause, resume, rollback, abort,
    promote, done, takeover (a replica took over from a stopped controller), ignore (a
    command that came too late to change anything)."""
    detail: str


class RolloutState(BaseModel):
    """Everything `GET /rollout/status` answers, kept in the shared folder."""

    plan: RolloutPlan
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    """This rollout among all that used the folder: commands name the one they are for."""
    status: Status = "running"
    step: int = 1
    """1-based index into `plan.steps` of the step being run."""
    weights: dict[str, float] = Field(default_factory=dict)
    """The split the rollout last set (the planned one in a dry run)."""
    split_version: int | None = None
    """Version of that split, which every replica must report before a window opens."""
    phase: Literal["following", "collecting"] = "following"
    """following: waiting for every replica to report `split_version`; collecting: the
    window is open and samples accumulate until every gate has enough."""
    window_start: float = 0.0
    window_deadline: float = 0.0
    extensions: int = 0
    samples: dict[str, int] = Field(default_factory=dict)
    """What the open window holds: answers per variant and shadow comparisons."""
    required: dict[str, int] = Field(default_factory=dict)
    """Per gate, the answers each variant needs before that gate can pass or fail."""
    gates: list[GateRecord] = Field(default_factory=list)
    """Each gate's last verdict, with its numbers."""
    decisions: list[Decision] = Field(default_factory=list)
    command_seen: int = 0
    """Number of the last command the controller took from the shared folder."""
    owner: str = ""
    """The replica process running the controller."""
    generation: int = 0
    """How many times the rollout was taken over: a controller that finds a higher
    generation in the folder has been replaced and stops."""
    heartbeat: float = 0.0
    """Wall-clock time the owner last wrote the state."""
    released: bool = False
    """The owner stopped (SIGTERM) and handed the rollout on: stale at once."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def heartbeat_age(self, now: float | None = None) -> float:
        """Seconds since the owner last wrote the state (never negative: clocks differ)."""
        return max(0.0, (time.time() if now is None else now) - self.heartbeat)

    def controller(self, now: float | None = None) -> Controller:
        """alive, stale (unfinished and its owner gone or silent), or done (finished)."""
        if self.finished:
            return "done"
        if self.released or self.heartbeat_age(now) >= CONTROLLER_STALE_S:
            return "stale"
        return "alive"

    @property
    def candidate_weight(self) -> float:
        return self.weights.get(self.plan.candidate, 0.0)

"""Traffic split between variants: weighted, sticky per user, changeable at run time.

A request with `X-User-Id` is placed by weighted rendezvous hashing: each variant scores
the user from a hash of (user, variant) and its weight, and the lowest score wins. The
hash never changes, so when the candidate's weight rises and the baseline's falls, the
candidate's scores only improve and the baseline's only worsen: users move from the
baseline onto the candidate, never back, whatever order a split lists its variants in.
Requests without an id are split at random.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

RESCALE_TOLERANCE = 1e-9


def check_weights(weights: Mapping[str, float]) -> None:
    """Refuse weights that cannot define a split: raises ValueError saying why."""
    if not weights:
        raise ValueError("give at least one variant")
    if any(not name.strip() for name in weights):
        raise ValueError("variant names must not be empty")
    bad = {name: w for name, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"weights must be finite and not negative, not {bad}")
    if max(weights.values()) <= 0:
        raise ValueError("at least one weight must be positive")


def normalise(weights: Mapping[str, float]) -> dict[str, float]:
    """Shares summing to 1; when the sum overflows (1e308s), scaled by the largest first."""
    if not math.isfinite(sum(weights.values())):
        largest = max(weights.values())
        weights = {name: w / largest for name, w in weights.items()}
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


class TrafficSplit(BaseModel):
    """Weights per variant (finite, non-negative, rescaled to sum to 1) and an optional shadow."""

    weights: dict[str, float] = Field(min_length=1)
    shadow: str | None = None
    """Variant that also receives a copy of each routed request; its answers are compared
    with the served ones and discarded."""

    _given: dict[str, float] | None = PrivateAttr(default=None)

    @field_validator("weights")
    @classmethod
    def _usable(cls, weights: dict[str, float]) -> dict[str, float]:
        check_weights(weights)
        return weights

    @model_validator(mode="after")
    def _rescale(self) -> TrafficSplit:
        if abs(sum(self.weights.values()) - 1.0) > RESCALE_TOLERANCE:
            self._given = dict(self.weights)
        self.weights = normalise(self.weights)
        return self

    @property
    def rescaled_from(self) -> dict[str, float] | None:
        """The weights as given, when they did not sum to 1 and were rescaled."""
        return self._given


class UnknownVariant(ValueError):
    pass


class Router:
    """Chooses a variant per request from the current split."""

    def __init__(self, variants: list[str], split: TrafficSplit, seed: int | None = None) -> None:
        self.variants = list(variants)
        self._random = random.Random(seed)
        self.split = split
        self._names: list[str] = []
        self._bounds: list[float] = []
        self._sticky: list[StickyDraw] = []
        self.update(split)

    def update(self, split: TrafficSplit) -> None:
        """Swap in a new split; requests already routed keep their variant."""
        self.check(split)
        names = [name for name, weight in split.weights.items() if weight > 0]
        bounds = list(accumulate(split.weights[name] for name in names))
        bounds[-1] = 1.0  # rounding must never leave a gap at the top
        sticky = [StickyDraw(name, split.weights[name]) for name in names]
        # One assignment, so a concurrent request sees the old split or the new, never a mix.
        self._names, self._bounds, self._sticky, self.split = names, bounds, sticky, split

    def check(self, split: TrafficSplit) -> None:
        """Raise UnknownVariant if the split names a variant this router cannot serve."""
        named = [*split.weights, *([split.shadow] if split.shadow is not None else [])]
        unknown = [name for name in named if name not in self.variants]
        if unknown:
            raise UnknownVariant(f"unknown variant(s) {unknown}; loaded: {self.variants}")

    def choose(self, user_id: bytes | None = None) -> str:
        """The variant for one request; stable for a given `user_id`."""
        if user_id:
            return sticky_choice(self._sticky, user_id)
        names = self._names
        point = self._random.random()
        return names[min(bisect_right(self._bounds, point), len(names) - 1)]

    def weight(self, variant: str) -> float:
        return self.split.weights.get(variant, 0.0)


def sticky_choice(draws: list[StickyDraw], user_id: bytes) -> str:
    """The variant whose draw scores lowest for this user (see StickyDraw)."""
    best, best_score = draws[0].name, math.inf
    for draw in draws:
        score = draw.score(user_id)
        if score < best_score:
            best, best_score = draw.name, score
    return best


class StickyDraw:
    """One variant's side of weighted rendezvous hashing: a user's score is -ln(u) / weight,
    u the user's uniform draw for this variant, and the lowest score wins. Scores are
    exponential races, so a variant wins with probability weight / total, exactly."""

    def __init__(self, name: str, weight: float) -> None:
        self.name = name
        self._inverse_weight = 1.0 / weight
        # Hashing continues from the variant's prefix: draws are independent per variant
        # and the same in every process and run.
        self._prefix = hashlib.blake2b(name.encode() + b"\0", digest_size=8)

    def score(self, user_id: bytes) -> float:
        digest = self._prefix.copy()
        digest.update(user_id)
        u = (int.from_bytes(digest.digest(), "big") + 0.5) / 2**64  # in (0, 1)
        return -math.log(u) * self._inverse_weight

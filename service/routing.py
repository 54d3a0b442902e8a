"""Traffic split between variants: weighted, sticky per user, changeable at run time.

A request with `X-User-Id` is placed by a hash of the id, so the same user keeps the
same variant for as long as the split does not change (and moves only if the share
its hash falls in moves). Requests without an id are split at random.
"""

from __future__ import annotations

import hashlib
import os
import random
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path

from pydantic import BaseModel, Field, field_validator


class TrafficSplit(BaseModel):
    """Weights per variant (any non-negative numbers, normalised) and an optional shadow."""

    weights: dict[str, float] = Field(min_length=1)
    shadow: str | None = None
    """Variant that also receives a copy of each routed request; its answers are compared
    with the served ones and discarded."""

    @field_validator("weights")
    @classmethod
    def _usable(cls, weights: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must not be negative")
        total = sum(weights.values())
        if total <= 0:
            raise ValueError("at least one weight must be positive")
        return {name: w / total for name, w in weights.items()}


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
        self.update(split)

    def update(self, split: TrafficSplit) -> None:
        """Swap in a new split; requests already routed keep their variant."""
        unknown = [v for v in [*split.weights, split.shadow] if v and v not in self.variants]
        if unknown:
            raise UnknownVariant(f"unknown variant(s) {unknown}; loaded: {self.variants}")
        names = [name for name, weight in split.weights.items() if weight > 0]
        bounds = list(accumulate(split.weights[name] for name in names))
        bounds[-1] = 1.0  # rounding must never leave a gap at the top
        # One assignment, so a concurrent request sees the old split or the new, never a mix.
        self._names, self._bounds, self.split = names, bounds, split

    def choose(self, user_id: bytes | None = None) -> str:
        """The variant for one request; stable for a given `user_id`."""
        names, bounds = self._names, self._bounds
        point = user_point(user_id) if user_id else self._random.random()
        return names[min(bisect_right(bounds, point), len(names) - 1)]

    def weight(self, variant: str) -> float:
        return self.split.weights.get(variant, 0.0)


def user_point(user_id: bytes) -> float:
    """Where a user falls in [0, 1): uniform and the same in every process and run."""
    digest = hashlib.blake2b(user_id, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SharedSplitFile:
    """The split as a file that several worker processes watch, so a change made through
    one worker reaches all of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen_mtime = 0

    def write(self, split: TrafficSplit) -> None:
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(split.model_dump_json())
        temporary.replace(self.path)  # atomic: readers see the old file or the new one

    def read_if_changed(self) -> TrafficSplit | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self._seen_mtime:
            return None
        self._seen_mtime = mtime
        return TrafficSplit.model_validate_json(self.path.read_bytes())

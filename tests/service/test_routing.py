"""Traffic split: proportions hold statistically, users stick, changes are atomic."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError
from scipy import stats

from service.routing import Router, TrafficSplit, UnknownVariant

VARIANTS = ["sklearn_fp32", "onnx_fp32", "onnx_int8"]


def canary(share: float) -> TrafficSplit:
    return TrafficSplit(weights={"sklearn_fp32": 1 - share, "onnx_int8": share})


def test_random_split_matches_weights() -> None:
    router = Router(VARIANTS, canary(0.1), seed=42)
    counts = Counter(router.choose() for _ in range(20_000))
    test = stats.binomtest(counts["onnx_int8"], 20_000, 0.1)
    assert test.pvalue > 0.001
    assert counts["onnx_fp32"] == 0


def test_sticky_users_split_in_proportion_and_keep_their_variant() -> None:
    router = Router(VARIANTS, canary(0.2), seed=1)
    users = [f"user-{i}".encode() for i in range(10_000)]
    first = {user: router.choose(user) for user in users}
    assert all(router.choose(user) == first[user] for user in users)
    share = Counter(first.values())["onnx_int8"]
    assert stats.binomtest(share, len(users), 0.2).pvalue > 0.001


STEPS = [0.01, 0.05, 0.2, 0.5, 1.0]


@pytest.mark.parametrize("candidate_first", [False, True])
def test_sticky_users_only_move_onto_a_growing_candidate(candidate_first: bool) -> None:
    """Through a rollout's steps, whatever order each split lists its variants in, a user
    once on the candidate stays there, and the candidate holds its share of users."""
    router = Router(VARIANTS, canary(STEPS[0]))
    users = [f"u{i}".encode() for i in range(5_000)]
    on_candidate: set[bytes] = set()
    for step, share in enumerate(STEPS):
        weights = {"sklearn_fp32": 1 - share, "onnx_int8": share}
        if candidate_first != (step % 2 == 1):  # alternate the order between steps
            weights = dict(reversed(weights.items()))
        router.update(TrafficSplit(weights=weights))
        now = {user for user in users if router.choose(user) == "onnx_int8"}
        assert on_candidate <= now, f"users left the candidate at {share:.0%}"
        assert stats.binomtest(len(now), len(users), share).pvalue > 0.001
        on_candidate = now


def test_with_a_third_variant_nobody_leaves_the_candidate_or_returns_to_the_baseline() -> None:
    """The baseline's weight falls, the candidate's rises, a third variant keeps its share
    (it may trade users with the baseline, whose scores fell)."""

    def split(share: float) -> TrafficSplit:
        weights = {"sklearn_fp32": 0.9 - share, "onnx_fp32": 0.1, "onnx_int8": share}
        return TrafficSplit(weights=weights)

    router = Router(VARIANTS, split(0.05))
    users = [f"u{i}".encode() for i in range(5_000)]
    before = {user: router.choose(user) for user in users}
    router.update(split(0.2))
    after = {user: router.choose(user) for user in users}
    moved = Counter((before[u], after[u]) for u in users if before[u] != after[u])
    allowed = {("sklearn_fp32", "onnx_int8"), ("onnx_fp32", "onnx_int8")}
    assert set(moved) <= allowed | {("sklearn_fp32", "onnx_fp32")}
    assert moved[("sklearn_fp32", "onnx_int8")] > 0
    third = Counter(after.values())["onnx_fp32"]
    assert stats.binomtest(third, len(users), 0.1).pvalue > 0.001


def test_weights_are_normalised_and_rescaling_is_reported() -> None:
    rescaled = TrafficSplit(weights={"a": 3, "b": 1})
    assert rescaled.weights == {"a": 0.75, "b": 0.25}
    assert rescaled.rescaled_from == {"a": 3, "b": 1}
    assert TrafficSplit(weights={"a": 0.75, "b": 0.25}).rescaled_from is None
    huge = TrafficSplit(weights={"a": 1e308, "b": 1e308})  # the sum would overflow
    assert huge.weights == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": -1, "b": 2}, "finite and not negative"),
        ({"a": math.nan}, "finite and not negative"),
        ({"a": math.inf, "b": 1}, "finite and not negative"),
        ({"a": 0}, "at least one weight must be positive"),
        ({"": 1}, "names must not be empty"),
        ({}, "at least 1 item"),
    ],
)
def test_unusable_weights_are_refused(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrafficSplit(weights=weights)


def test_unknown_variants_are_refused() -> None:
    router = Router(VARIANTS, canary(0.1))
    with pytest.raises(UnknownVariant, match="mystery"):
        router.update(TrafficSplit(weights={"mystery": 1}))
    with pytest.raises(UnknownVariant, match="ghost"):
        router.update(TrafficSplit(weights={"onnx_int8": 1}, shadow="ghost"))
    assert router.weight("onnx_int8") == pytest.approx(0.1)

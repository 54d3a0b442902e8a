"""Traffic split: proportions hold statistically, users stick, changes are atomic."""

from __future__ import annotations

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


def test_growing_the_canary_only_moves_users_onto_it() -> None:
    router = Router(VARIANTS, canary(0.1), seed=1)
    users = [f"u{i}".encode() for i in range(5_000)]
    before = {user: router.choose(user) for user in users}
    router.update(canary(0.3))
    after = {user: router.choose(user) for user in users}
    assert all(after[u] == "onnx_int8" for u in users if before[u] == "onnx_int8")


def test_weights_are_normalised_and_validated() -> None:
    assert TrafficSplit(weights={"a": 3, "b": 1}).weights == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValidationError, match="must not be negative"):
        TrafficSplit(weights={"a": -1, "b": 2})
    with pytest.raises(ValidationError, match="at least one weight must be positive"):
        TrafficSplit(weights={"a": 0})


def test_unknown_variants_are_refused() -> None:
    router = Router(VARIANTS, canary(0.1))
    with pytest.raises(UnknownVariant, match="mystery"):
        router.update(TrafficSplit(weights={"mystery": 1}))
    with pytest.raises(UnknownVariant, match="ghost"):
        router.update(TrafficSplit(weights={"onnx_int8": 1}, shadow="ghost"))
    assert router.weight("onnx_int8") == pytest.approx(0.1)

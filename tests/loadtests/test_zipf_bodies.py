"""`--bodies zipf:H`: bodies that repeat popular rows so that a row cache of the size the
guide names answers a share H of them, in the order the engines send them."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from loadtests.argtypes import body_mix
from loadtests.bodies import (
    COLD_BODIES,
    HOT_ROWS,
    BodyMix,
    ZipfRows,
    body_source,
    mixed_bodies,
    parse_body_mix,
    zipf_bodies,
)
from loadtests.engines.native_generator import USER_POPULATION, encode_requests
from service.batching import BatchResult
from service.cache import RowCache
from service.metrics import Metrics
from service.payload import parse_instances
from service.protocols.v2 import CODEC as V2
from service.store import Dataset


def test_the_mix_is_distinct_or_zipf_with_a_share_that_can_miss() -> None:
    assert parse_body_mix("distinct") == BodyMix("distinct")
    assert parse_body_mix("zipf:0.9") == BodyMix("zipf", 0.9)
    assert str(parse_body_mix("zipf:0.5")) == "zipf:0.5"
    for wrong in ("zipf", "zipf:x", "zipf:1", "zipf:-0.1", "uniform:0.5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=r"distinct, or zipf:H"):
            body_mix(wrong)


def served_share(bodies: list[bytes], n_features: int, cache_rows: int, passes: int = 3) -> float:
    """The share of requests a server's RowCache of `cache_rows` answers once it has seen
    the bodies once, the bodies sent in turn as the engines send them."""
    cache = RowCache("v", "1", cache_rows, Metrics(CollectorRegistry()).for_cache("v"))
    hits = sent = 0
    for turn in range(passes):
        for body in bodies:
            rows = parse_instances(body, n_features, 64)
            hit = cache.lookup(rows) is not None
            if not hit:
                cache.store(rows, BatchResult(np.zeros(len(rows)), None, 0.0, 0.0, len(rows)))
            if turn:
                hits, sent = hits + hit, sent + 1
    return hits / sent


@pytest.mark.parametrize("hit_ratio", [0.5, 0.9])
@pytest.mark.parametrize("cache_rows", [256, 1000])
def test_a_cache_of_256_to_1000_rows_answers_the_share_asked_for(
    holdout: Dataset, hit_ratio: float, cache_rows: int
) -> None:
    bodies = zipf_bodies(holdout.features, 1, hit_ratio)
    assert len(bodies) == round(COLD_BODIES / (1 - hit_ratio))
    share = served_share(bodies, holdout.features.shape[1], cache_rows)
    assert share == pytest.approx(hit_ratio, abs=0.04)


def test_without_repeats_nothing_is_answered_from_a_cache(holdout: Dataset) -> None:
    bodies = mixed_bodies(BodyMix("zipf", 0.0), holdout.features, 2)
    assert served_share(bodies, holdout.features.shape[1], cache_rows=1000) == 0.0


def test_popular_rows_follow_zipfs_law(holdout: Dataset) -> None:
    stream = ZipfRows(holdout.features, 1, hit_ratio=1.0)
    counts = Counter(stream.next().tobytes() for _ in range(20_000))
    shares = [count / 20_000 for _, count in counts.most_common()]
    harmonic = sum(1 / k for k in range(1, HOT_ROWS + 1))
    assert len(counts) == HOT_ROWS
    assert shares[0] == pytest.approx(1 / harmonic, abs=0.015)
    assert shares[1] == pytest.approx(1 / (2 * harmonic), abs=0.015)


def test_rare_rows_stay_unique_even_as_float32_and_apart_between_users(
    holdout: Dataset,
) -> None:
    """A V2 body carries FP32: rows made unique only below float32's precision would
    collapse into one and hit."""
    users = [ZipfRows(holdout.features, 1, hit_ratio=0.0, salt=salt) for salt in (1, 2_345)]
    rows = [np.concatenate([user.next() for _ in range(3_000)]) for user in users]
    as_float32 = {row.astype(np.float32).tobytes() for user in rows for row in user}
    assert len(as_float32) == 6_000
    base = holdout.features[np.arange(3_000) % len(holdout.features)]
    np.testing.assert_allclose(rows[1], base, rtol=1e-4, atol=1e-30)  # the same work


def test_each_locust_user_draws_its_bodies_from_its_own_source(holdout: Dataset) -> None:
    source = body_source(BodyMix("zipf", 0.5), holdout.features, 1, "v2", salt=7)
    body = source()
    rows, _ = V2.parse(body, holdout.features.shape[1], 64, [])
    assert rows.shape == (1, holdout.features.shape[1])
    distinct = body_source(BodyMix("distinct"), holdout.features, 1)
    assert len({distinct() for _ in range(64)}) == 64


def test_the_split_sends_every_body_of_a_long_mix_once_per_turn() -> None:
    bodies = [b'{"instances":[[%d.0]]}' % n for n in range(USER_POPULATION + 5)]
    requests = encode_requests(bodies, "split", "127.0.0.1:8000")
    assert len(requests) == len(bodies)
    assert [r.split(b"\r\n\r\n")[1] for r in requests] == bodies

"""Request bodies for load tests: real hold-out rows, and requests that must be refused.

Real rows, not random numbers, so the model does the work it does in production
(scikit-learn and onnxruntime costs do not depend on values much, but a quantized
model's clipping paths and a tree's depth do). Bodies are encoded once, up front, so
the generator spends its time sending, not serializing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import orjson

from loadtests.shift import Shift, shifted
from perfserve_common.protocols import ProtocolName, request_body
from service.store import load_holdout

DISTINCT_BODIES = 64
# The Zipf mix (`--bodies zipf:H`): a share H of bodies repeat one of HOT_ROWS popular
# rows, ranked by Zipf's law; the others carry rows seen once in COLD_BODIES / (1 - H)
# bodies, so a cache of up to about COLD_BODIES rows has dropped them when they come back.
HOT_ROWS = 32
ZIPF_EXPONENT = 1.0
COLD_BODIES = 1024
MAX_HIT_RATIO = 0.95
ZIPF_SEED = 20261207
SALT_BASE = 1000
FRESH_PASSES = 1000
"""Passes over the hold-out rows before a rare row comes back (a thousand float32 steps
of one feature, a few hundredths of a percent, at most)."""
BODIES_HELP = (
    "What the request bodies carry: distinct (64 hold-out bodies in turn) or zipf:H, rows "
    f"repeated as popular users' are (a share H from {HOT_ROWS} popular rows, ranked by "
    f"Zipf's law; the rest unseen for {COLD_BODIES} bodies): a server caching 256 to "
    "1,000 rows (--cache-rows) answers a share H from its cache."
)


class BodyMix(NamedTuple):
    """How bodies repeat rows: `distinct`, or `zipf` with the share that repeats."""

    kind: Literal["distinct", "zipf"]
    hit_ratio: float = 0.0

    def __str__(self) -> str:
        return "distinct" if self.kind == "distinct" else f"zipf:{self.hit_ratio:g}"


DISTINCT = BodyMix("distinct")
"""The default: DISTINCT_BODIES bodies in turn."""


def parse_body_mix(text: str) -> BodyMix:
    """`distinct` or `zipf:H` with 0 <= H <= MAX_HIT_RATIO; ValueError saying what is allowed."""
    if text == "distinct":
        return DISTINCT
    kind, _, ratio = text.partition(":")
    try:
        hit_ratio = float(ratio)
    except ValueError:
        hit_ratio = -1.0
    if kind != "zipf" or not 0 <= hit_ratio <= MAX_HIT_RATIO:
        raise ValueError(
            f"{text!r}: use distinct, or zipf:H with H the share of repeated rows, "
            f"0 to {MAX_HIT_RATIO} (e.g. zipf:0.9)"
        )
    return BodyMix("zipf", hit_ratio)


def mixed_bodies(
    mix: BodyMix,
    rows: np.ndarray,
    rows_per_request: int,
    protocol: ProtocolName = "perfserve",
    salt: int = 0,
) -> list[bytes]:
    """The bodies `mix` asks for, in the order they are to be sent."""
    if mix.kind == "distinct":
        return encode_bodies(rows, rows_per_request, protocol=protocol)
    return zipf_bodies(rows, rows_per_request, mix.hit_ratio, protocol, salt)


def holdout_rows(store: Path, shift: Shift = ()) -> np.ndarray:
    """The store's hold-out features, what `perfserve build` kept aside for scoring, with
    the features `shift` names scaled (loadtests/shift.py)."""
    holdout = load_holdout(store)
    return shifted(holdout.features, shift, holdout.feature_names)


def encode_bodies(
    rows: np.ndarray,
    rows_per_request: int,
    count: int | None = None,
    protocol: ProtocolName = "perfserve",
) -> list[bytes]:
    """`count` JSON bodies of `rows_per_request` consecutive hold-out rows each, in the
    target's protocol (see common/protocols.py). By default enough to send every row (and
    at least `DISTINCT_BODIES`): traffic drawn from only some of the hold-out is
    distributed unlike the training data, which the service's drift metrics would report
    (the small example's first 64 hold-out rows read as a population stability index
    of 0.28 on one feature, above the alert's 0.2; all 171 of them, 0.10)."""
    n = len(rows)
    if count is None:
        count = max(DISTINCT_BODIES, -(-n // rows_per_request))
    bodies = []
    for i in range(count):
        picked = [rows[(i * rows_per_request + j) % n] for j in range(rows_per_request)]
        bodies.append(request_body(protocol, np.asarray(picked)))
    return bodies


def bad_bodies(n_features: int) -> dict[str, bytes]:
    """Bodies the service must answer with a 4xx, by what is wrong with them."""
    row = [0.5] * n_features
    return {
        "wrong_feature_count": orjson.dumps({"instances": [row[:-1]]}),
        "not_a_number": orjson.dumps({"instances": [["x", *row[1:]]]}),
        "empty": orjson.dumps({"instances": []}),
        "malformed_json": b'{"instances": [[1, 2,',
        "missing_instances": orjson.dumps({"rows": [row]}),
        "non_finite": b'{"instances": [[' + b"1e999, " * (n_features - 1) + b"1]]}",
    }


def zipf_bodies(
    rows: np.ndarray,
    rows_per_request: int,
    hit_ratio: float,
    protocol: ProtocolName = "perfserve",
    salt: int = 0,
) -> list[bytes]:
    """Bodies to send in this order and over again, a share `hit_ratio` of them repeating
    popular rows: COLD_BODIES / (1 - hit_ratio) of them, so that each of the others comes
    back only after COLD_BODIES bodies of rows unseen in between (see `ZipfRows`)."""
    stream = ZipfRows(rows, rows_per_request, hit_ratio, salt)
    count = round(COLD_BODIES / (1 - hit_ratio))
    return [request_body(protocol, stream.next()) for _ in range(count)]


def body_source(
    mix: BodyMix,
    rows: np.ndarray,
    rows_per_request: int,
    protocol: ProtocolName = "perfserve",
    salt: int = 0,
) -> Callable[[], bytes]:
    """Where one Locust user takes its next body from: the distinct bodies in turn, or a
    Zipf stream of its own (its rare rows never repeat; the popular ones are everyone's)."""
    if mix.kind == "zipf":
        stream = ZipfRows(rows, rows_per_request, mix.hit_ratio, salt)
        return lambda: request_body(protocol, stream.next())
    return itertools.cycle(encode_bodies(rows, rows_per_request, protocol=protocol)).__next__


class ZipfRows:
    """An endless stream of request rows as popular items bring them: with probability
    `hit_ratio` from the first HOT_ROWS hold-out rows, the k-th most popular with weight
    1/k**ZIPF_EXPONENT; otherwise rows not sent before. Those are hold-out rows whose
    first feature is moved by a few float32 steps, far below what the model can tell
    apart, so it does the same work; a `salt` moves the second and third features too,
    which gives each Locust user rare rows of its own."""

    def __init__(
        self, rows: np.ndarray, rows_per_request: int, hit_ratio: float, salt: int = 0
    ) -> None:
        self.rows = rows
        self.rows_per_request = rows_per_request
        self.hit_ratio = hit_ratio
        self.salt = salt
        self.sent_fresh = 0
        self._rng = np.random.default_rng([ZIPF_SEED, salt])
        weights = np.cumsum(1 / np.arange(1, HOT_ROWS + 1) ** ZIPF_EXPONENT)
        self._cumulative = weights / weights[-1]

    def next(self) -> np.ndarray:
        """One request's rows."""
        if self._rng.random() < self.hit_ratio:
            drawn = self._rng.random(self.rows_per_request)
            ranks = np.searchsorted(self._cumulative, drawn, side="right")
            return self.rows[ranks % len(self.rows)]
        start, self.sent_fresh = self.sent_fresh, self.sent_fresh + self.rows_per_request
        return _fresh_rows(self.rows, start, self.rows_per_request, self.salt)


def _fresh_rows(rows: np.ndarray, start: int, count: int, salt: int) -> np.ndarray:
    """Rows `start` to `start + count` of the endless list of unique rows: hold-out rows in
    turn, moved by one more float32 step of the first feature at each pass over them; a
    `salt` (below SALT_BASE squared) moves the second and third by its two digits in base
    SALT_BASE. After FRESH_PASSES passes the list starts again."""
    index = np.arange(start, start + count) % (FRESH_PASSES * len(rows))
    picked = rows[index % len(rows)].astype(np.float32)
    picked[:, 0] += (index // len(rows) + 1) * np.spacing(picked[:, 0])
    for feature, part in ((1, salt % SALT_BASE), (2, salt // SALT_BASE % SALT_BASE)):
        picked[:, feature] += part * np.spacing(picked[:, feature])
    return picked.astype(np.float64)

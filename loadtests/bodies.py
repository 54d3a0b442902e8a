"""Request bodies for load tests: real hold-out rows, and requests that must be refused.

Real rows, not random numbers, so the model does the work it does in production
(scikit-learn and onnxruntime costs do not depend on values much, but a quantized
model's clipping paths and a tree's depth do). Bodies are encoded once, up front, so
the generator spends its time sending, not serializing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from loadtests.shift import Shift, shifted
from perfserve_common.protocols import ProtocolName, request_body
from service.store import load_holdout

DISTINCT_BODIES = 64


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

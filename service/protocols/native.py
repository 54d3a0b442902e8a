"""perfserve's own protocol: `{"instances": [...]}` in, variant, version, predictions and
probabilities out, errors as `{"detail": "..."}`."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.batching import BatchResult
from service.payload import encode_error, encode_prediction, parse_instances
from service.protocols.codec import Headers


class NativeCodec:
    """`POST /predict` and `POST /models/{variant}/predict`."""

    media_types: frozenset[bytes] = frozenset()

    def parse(
        self, body: bytes, n_features: int, max_rows: int, headers: Headers
    ) -> tuple[np.ndarray, Any]:
        return parse_instances(body, n_features, max_rows), None

    def encode(
        self, model: str, variant: str, version: str, result: BatchResult, request: Any
    ) -> bytes:
        return encode_prediction(variant, version, result.labels, result.probabilities)

    def error(self, message: str) -> bytes:
        return encode_error(message)


CODEC = NativeCodec()

"""KServe V1: `POST /v1/models/{name}:predict` with `{"instances": [...]}`, answered with
`{"predictions": [...]}`, errors as `{"error": "..."}` (the model routes are in
service/protocols/api.py).

The request body is the one `/predict` takes, so it is read by the same parser and
refused for the same reasons."""

from __future__ import annotations

from typing import Any

import orjson

from service.batching import BatchResult
from service.payload import jsonable
from service.protocols.native import NativeCodec

MODELS, PREDICT = "/v1/models/", ":predict"


class V1Codec(NativeCodec):
    """Reads `/predict`'s body; writes KServe V1's answer and error."""

    def encode(
        self, model: str, variant: str, version: str, result: BatchResult, request: Any
    ) -> bytes:
        return orjson.dumps(
            {"predictions": jsonable(result.labels)}, option=orjson.OPT_SERIALIZE_NUMPY
        )

    def error(self, message: str) -> bytes:
        return orjson.dumps({"error": message})


CODEC = V1Codec()

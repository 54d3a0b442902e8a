"""The inference protocols perfserve's load tools speak, and how each one asks a server
for a prediction: the path and the request body.

`perfserve` is perfserve's own `/predict`; `v1` is KServe V1 (`/v1/models/{model}:predict`
with `{"instances": ...}`); `v2` is the Open Inference Protocol (`/v2/models/{model}/infer`
with one FP32 tensor of shape [rows, features]). A target that is not perfserve names its
models its own way: with `v1` and `v2` a variant name is the target's model name.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

import numpy as np
import orjson

ProtocolName = Literal["perfserve", "v1", "v2"]
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)
SPLIT_MODEL = "perfserve"
"""perfserve's model name for its live traffic split, in V1 and V2."""


def predict_path(protocol: ProtocolName, model: str | None) -> str:
    """The path a prediction is posted to; `model` None asks perfserve's traffic split."""
    if protocol == "v1":
        return f"/v1/models/{model or SPLIT_MODEL}:predict"
    if protocol == "v2":
        return f"/v2/models/{model or SPLIT_MODEL}/infer"
    return "/predict" if model is None else f"/models/{model}/predict"


def request_body(protocol: ProtocolName, rows: np.ndarray) -> bytes:
    """The JSON body asking for predictions on `rows` (a 2-D float matrix)."""
    matrix = np.atleast_2d(rows)
    if protocol == "v2":
        tensor = {
            "name": "input-0",
            "shape": list(matrix.shape),
            "datatype": "FP32",
            "data": matrix.ravel().tolist(),
        }
        return orjson.dumps({"inputs": [tensor]})
    return orjson.dumps({"instances": matrix.tolist()})


def parse_protocol(text: str) -> ProtocolName:
    """A protocol name from the command line; ValueError naming the allowed ones."""
    if text not in PROTOCOLS:
        raise ValueError(f"{text!r}; allowed: {', '.join(PROTOCOLS)}")
    return cast(ProtocolName, text)

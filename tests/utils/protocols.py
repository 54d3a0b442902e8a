"""Request bodies in the other protocols, for tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def v2_body(rows: Any, datatype: str = "FP32", nested: bool = False) -> dict[str, Any]:
    """A V2 infer body holding `rows` as one [rows, features] tensor."""
    matrix = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    data = matrix.tolist() if nested else matrix.ravel().tolist()
    tensor = {"name": "input-0", "shape": list(matrix.shape), "datatype": datatype, "data": data}
    return {"inputs": [tensor]}

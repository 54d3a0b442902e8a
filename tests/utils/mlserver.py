"""MLServer (with its scikit-learn runtime) serving a store's scikit-learn variant over V2,
for sweeps that put a real peer beside perfserve.

MLServer pins FastAPI, Starlette and protobuf older than this project's, so it runs from
its own virtualenv: `PERFSERVE_MLSERVER_PYTHON` names that virtualenv's python
(`python -m venv V && V/bin/pip install mlserver mlserver-sklearn scikit-learn==X`, X
the version that built the store, whose pickles it must load)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from perfserve_common.processes import free_port, running_process
from service.store import load_manifest

MODEL = "sklearn"
ENV = "PERFSERVE_MLSERVER_PYTHON"


def mlserver_python() -> str:
    """The python of MLServer's virtualenv; skips the test when none is given."""
    python = os.environ.get(ENV)
    if not python:
        pytest.skip(f"{ENV} names no virtualenv with mlserver and mlserver-sklearn")
    return python


def write_settings(folder: Path, store: Path, port: int) -> None:
    """MLServer's settings.json and the model's model-settings.json in `folder`."""
    grpc_port = next(p for p in iter(free_port, None) if p != port)
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port}
    settings |= {"metrics_endpoint": None, "parallel_workers": 0, "debug": False}
    (folder / "settings.json").write_text(json.dumps(settings))
    variant = load_manifest(store).variants["sklearn_fp32"]
    model = folder / MODEL
    model.mkdir()
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 64,
        "max_batch_time": 0.002,
        "parameters": {"uri": str((store / variant.path).resolve())},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings))


@contextmanager
def running_mlserver(python: str, store: Path, folder: Path) -> Iterator[str]:
    """MLServer serving the store's sklearn_fp32 as model `sklearn`; yields its base URL."""
    port = free_port()
    write_settings(folder, store, port)
    command = [str(Path(python).with_name("mlserver")), "start", str(folder)]
    url = f"http://127.0.0.1:{port}"
    with running_process(command, f"{url}/v2/models/{MODEL}/ready", timeout_s=120):
        yield url

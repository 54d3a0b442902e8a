"""A variant whose batch fails or whose batch loop dies, seen over HTTP.

The server runs in this process (uvicorn on a thread, on a free loopback port), so the
test can break one variant's runner or end its batch loop as a bug would, then watch
what clients and `/readyz` see.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from perfserve_common.processes import free_port
from service.app import create_app
from service.predict import PredictEndpoint
from service.settings import Settings
from service.state import Service
from service.store import Dataset
from tests.utils import body, eventually
from tests.utils.runners import ScalarOutputRunner


@pytest.fixture
def served(store: Path) -> Iterator[tuple[str, Service]]:
    settings = Settings(store=store, port=free_port(), inference="thread")
    app = create_app(settings)
    assert isinstance(app, PredictEndpoint)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        loop="uvloop",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:  # listening, models loaded
        assert thread.is_alive()
        return server.started and app.service.ready

    eventually(started, 60)
    try:
        yield f"http://127.0.0.1:{settings.port}", app.service
    finally:
        server.should_exit = True
        thread.join(20)


def test_a_failing_batch_gets_a_generic_500_and_the_variant_goes_on(
    served: tuple[str, Service], holdout: Dataset
) -> None:
    url, service = served
    batcher = service.variants["onnx_fp32"].batcher
    batcher.runner = ScalarOutputRunner(batcher.runner)
    payload = body(holdout.features[:2])
    failed = httpx.post(f"{url}/models/onnx_fp32/predict", json=payload, timeout=10)
    assert failed.status_code == 500
    detail = failed.json()["detail"]
    assert "onnx_fp32" in detail and "server log" in detail
    assert "IndexError" not in detail  # what went wrong stays in the log
    assert httpx.post(f"{url}/models/onnx_fp32/predict", json=payload).status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200


def test_a_dead_batch_loop_answers_503_and_readyz_says_which(
    served: tuple[str, Service], holdout: Dataset
) -> None:
    url, service = served
    task = service.variants["onnx_int8"].batcher._task
    assert task is not None
    task.get_loop().call_soon_threadsafe(task.cancel)  # as an escaped error would end it
    payload = body(holdout.features[:1])
    eventually(task.done, every_s=0.02)
    refused = httpx.post(f"{url}/models/onnx_int8/predict", json=payload, timeout=10)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "batch loop stopped" in refused.json()["detail"]
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503 and "onnx_int8" in ready.json()["detail"]
    assert httpx.post(f"{url}/models/sklearn_fp32/predict", json=payload).status_code == 200

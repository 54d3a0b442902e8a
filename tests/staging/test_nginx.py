"""The stack's load balancer: its config passes `nginx -t`, and it really proxies.

nginx resolves `service` only inside compose, so the config is checked and run with the
replicas' name rewritten to loopback servers; every other line is the project's own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from common.processes import ServerProcess
from service.store import Dataset
from tests.utils import body, require_tool
from tests.utils.stack import nginx_config, running_nginx


@pytest.mark.integration
def test_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_tool("nginx")
    config = nginx_config(["127.0.0.1:8000", "127.0.0.1:8001"], "127.0.0.1:8080", tmp_path)
    checked = subprocess.run(
        [nginx, "-e", "stderr", "-t", "-c", str(config), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_predictions_and_refusals_pass_through_unchanged(
    server: ServerProcess, holdout: Dataset, tmp_path: Path
) -> None:
    require_tool("nginx")
    upstream = server.url.removeprefix("http://")
    with running_nginx([upstream], tmp_path) as lb, httpx.Client(base_url=lb) as client:
        answered = client.post(
            "/predict", json=body(holdout.features[:2]), headers={"X-Variant": "onnx_int8"}
        )
        refused = client.post("/predict", json={"instances": [[1.0]]})
        unknown = client.post("/models/nope/predict", json=body(holdout.features[:1]))
        metrics = client.get("/metrics")
    assert answered.status_code == 200
    assert answered.headers["x-variant"] == "onnx_int8" == answered.json()["variant"]
    assert "queue;dur=" in answered.headers["server-timing"]
    assert refused.status_code == 422 and "features" in refused.json()["detail"]
    assert unknown.status_code == 404
    assert "perfserve_request_duration_seconds_bucket" in metrics.text

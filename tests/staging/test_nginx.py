"""The stack's load balancer: its config passes `nginx -t`, and it really proxies.

nginx resolves `service` only inside compose, so the config is checked and run with the
replicas' name rewritten to loopback servers; every other line is the project's own.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from perfserve.staging.nginx import CONFIG as NGINX_CONFIG
from perfserve.staging.nginx import SHEDDING_KINDS, Shedding, local_config, running_nginx
from perfserve_common.processes import ServerProcess
from service.settings import Settings
from service.store import Dataset
from tests.utils import ADMIN, body, require_tool


@pytest.mark.integration
@pytest.mark.parametrize("shedding", [None, *(Shedding(kind, 64) for kind in SHEDDING_KINDS)])
def test_config_passes_nginx_t(shedding: Shedding | None, tmp_path: Path) -> None:
    nginx = require_tool("nginx")
    upstreams = ["127.0.0.1:8000", "127.0.0.1:8001"]
    config = local_config(upstreams, "127.0.0.1:8080", tmp_path, shedding)
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


def test_the_balancer_sheds_past_its_rate_with_a_503_that_says_when_to_retry(
    server: ServerProcess, holdout: Dataset, tmp_path: Path
) -> None:
    require_tool("nginx")
    upstream = server.url.removeprefix("http://")
    payload = body(holdout.features[:1])
    shedding = Shedding("limit-req", 1)
    with running_nginx([upstream], tmp_path, shedding) as lb, httpx.Client(base_url=lb) as client:
        statuses = [client.post("/predict", json=payload) for _ in range(6)]
    shed = [answer for answer in statuses if answer.status_code == 503]
    assert 1 <= len(shed) <= 5  # one a second, plus a burst of one, pass
    assert {answer.status_code for answer in statuses} == {200, 503}
    assert all(answer.headers["retry-after"] == "1" for answer in shed)
    assert "load balancer is at its limit" in shed[0].json()["detail"]


def test_slow_clients_and_idle_upstreams_are_timed_out() -> None:
    config = NGINX_CONFIG.read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert re.search(rf"^\s*{directive} \d+s;", config, re.MULTILINE), directive
    upstream = re.search(r"upstream perfserve \{(.*?)\}", config, re.DOTALL)
    assert upstream is not None
    idle = re.search(r"keepalive_timeout (\d+)s;", upstream[1])
    assert idle is not None
    # nginx must drop an idle upstream connection before the service closes it.
    assert int(idle[1]) < Settings.model_fields["keep_alive_s"].default


def test_clients_reach_predictions_but_not_admin_metrics_or_docs(
    server: ServerProcess, holdout: Dataset, tmp_path: Path
) -> None:
    """A client (any address but this machine's 127.0.0.1, here 127.0.0.2) is refused the
    admin paths, /metrics and the docs, and bodies and headers past the service's own
    bounds; this machine's own tools (127.0.0.1) reach everything."""
    require_tool("nginx")
    upstream = server.url.removeprefix("http://")
    outside = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        running_nginx([upstream], tmp_path) as lb,
        httpx.Client(base_url=lb, transport=outside) as client,
    ):
        assert client.post("/predict", json=body(holdout.features[:1])).status_code == 200
        assert client.get("/traffic").status_code == 200
        assert client.get("/models").status_code == 200
        refused = [
            client.put("/traffic", json={"weights": {"onnx_int8": 1}}, headers=ADMIN),
            client.post("/rollout/start", json={}, headers=ADMIN),
            client.get("/rollout/status", headers=ADMIN),
            client.get("/metrics"),
            client.get("/metrics", params={"name[]": "perfserve_runners"}),
            client.get("/docs"),
            client.get("/openapi.json"),
        ]
        assert [answer.status_code for answer in refused] == [403] * len(refused)
        assert "not exposed" in refused[0].json()["detail"]
        too_large = client.post("/predict", content=b" " * (4 * 1024 * 1024 + 1))
        assert too_large.status_code == 413 and "exceeds" in too_large.json()["detail"]
        long_header = client.get("/healthz", headers={"x-long": "a" * 20_000})
        assert long_header.status_code in (400, 431)
        assert httpx.get(f"{lb}/metrics").status_code == 200  # from 127.0.0.1


def test_clients_are_limited_per_address() -> None:
    config = NGINX_CONFIG.read_text()
    assert re.search(r"limit_conn_zone \$client_key zone=\w+:\d+m;", config)
    assert re.search(r"limit_req_zone \$client_key zone=\w+:\d+m rate=\d+r/s;", config)
    assert "limit_req_status 429;" in config and "limit_conn_status 429;" in config
    body_limit = re.search(r"client_max_body_size (\d+)m;", config)
    assert body_limit is not None
    assert int(body_limit[1]) * 1024 * 1024 == Settings.model_fields["max_body_bytes"].default
    count, size = re.search(r"large_client_header_buffers (\d+) (\d+)k;", config).groups()  # type: ignore[union-attr]
    assert int(count) * int(size) * 1024 <= Settings.model_fields["max_header_bytes"].default

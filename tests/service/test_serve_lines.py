"""`perfserve serve` says one line when it is ready and one when it has stopped."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import ADMIN_ENV, body, eventually, poll

pytestmark = pytest.mark.integration  # real servers and their output


def _wait_for_line(server: ServerProcess, start: str, timeout_s: float = 30.0) -> str:
    def lines() -> list[str]:
        return [line for line in server.log().splitlines() if line.startswith(start)]

    found = poll(lines, bool, timeout_s)
    assert found, f"no line starting {start!r} in:\n{server.log()}"
    return found[0]


def _inflight(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("perfserve_inflight_requests"))
    return float(line.split()[-1])


def test_ready_and_stopped_lines(store: Path, holdout: Dataset) -> None:
    options = [
        "--traffic", "sklearn_fp32=0.9,onnx_int8=0.1",
        "--shadow", "onnx_fp32", "--allow-faults", "--inject", "onnx_int8:latency-ms=300",
        "--max-batch-size", "1",
    ]  # fmt: skip
    with running_server(store, options=options, env=ADMIN_ENV) as server:
        ready = _wait_for_line(server, "perfserve serve: ready")
        port = server.url.rsplit(":", 1)[1]
        assert f"ready on http://127.0.0.1:{port}, 1 worker;" in ready
        assert "sklearn_fp32 (loaded, 90% of traffic)" in ready
        assert "onnx_int8 (loaded, 10% of traffic)" in ready
        assert "onnx_fp32 (loaded, shadow)" in ready
        assert ready.endswith("admin API (PUT /traffic) enabled")

        # Three slow requests in flight when the stop signal comes: all are answered.
        url = f"{server.url}/models/onnx_int8/predict"
        payload = body(np.asarray(holdout.features[:1]))
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(httpx.post, url, json=payload, timeout=30) for _ in range(3)]
            eventually(lambda: _inflight(server) >= 3, 20, every_s=0.02)
            assert server.stop() == 0
            assert [answer.result().status_code for answer in answers] == [200, 200, 200]
        stopped = server.log().strip().splitlines()[-1]
        # The three, and any other request that reached the server in that moment (on a
        # busy machine, a scrape or a poll from elsewhere may): every one is answered.
        drained = re.fullmatch(
            r"perfserve serve: stopped after draining (\d+) requests in flight", stopped
        )
        assert drained is not None and int(drained[1]) >= 3, stopped


def test_without_a_token_the_admin_api_is_disabled(store: Path) -> None:
    with running_server(store) as server:
        ready = _wait_for_line(server, "perfserve serve: ready")
        assert ready.endswith("admin API (PUT /traffic) disabled (no admin token)")
        assert "sklearn_fp32 (loaded, 100% of traffic)" in ready

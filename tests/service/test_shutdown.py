"""SIGTERM: requests already admitted are answered within the grace period, even one
shorter than a second (it once was cut to whole seconds: 0.9 became 0, no grace at all)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import running_server
from service.store import Dataset
from tests.utils import body, eventually


@pytest.mark.integration
def test_a_grace_under_a_second_still_lets_admitted_requests_finish(
    store: Path, holdout: Dataset
) -> None:
    options = ["--graceful-shutdown-s", "0.9", "--allow-faults"]
    options += ["--inject", "sklearn_fp32:latency-ms=300"]
    options += ["--inference", "thread"]
    with running_server(store, options=options) as server:
        answers: list[httpx.Response] = []
        payload = body(holdout.features[:1])
        client = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{server.url}/predict", json=payload))
        )
        client.start()
        eventually(
            lambda: "perfserve_inflight_requests 1.0" in httpx.get(f"{server.url}/metrics").text,
            every_s=0.01,
        )
        exit_code = server.stop()  # while the 300 ms model call runs
        client.join(10)
    assert [answer.status_code for answer in answers] == [200]
    assert exit_code == 0

"""A worker killed under `--workers 2`: no longer counted, in readiness or in the gauges."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import running_server
from tests.utils import eventually


def gauge(url: str, name: str) -> dict[str, float]:
    """A gauge's value per variant (or "" without labels), summed over the workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        sample.labels.get("variant", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def workers(supervisor: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(supervisor).children()
        if "spawn_main" in " ".join(child.cmdline())
    ]


@pytest.mark.integration
def test_a_killed_worker_leaves_no_live_gauges_behind(store: Path) -> None:
    options = ["--workers", "2", "--body-timeout-s", "2", "--inference", "thread"]
    with running_server(store, options=options) as server:
        supervisor = server.process.pid
        assert gauge(server.url, "perfserve_runners") == {
            "sklearn_fp32": 2,
            "onnx_fp32": 2,
            "onnx_int8": 2,
        }
        port = int(server.url.rsplit(":", 1)[1])
        # Requests held in flight (a body that never comes), spread over both workers.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        head = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"
        try:
            for sock in held:
                sock.sendall(head)
            inflight = "perfserve_inflight_requests"
            eventually(lambda: gauge(server.url, inflight)[""] == len(held), 10, what="in flight")
            victim = workers(supervisor)[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)

            def one_of_two() -> bool:
                ready = httpx.get(f"{server.url}/readyz", timeout=10)
                return ready.status_code == 503 and "1 of 2 workers" in ready.text

            eventually(one_of_two, 20, what="counted as gone")
            eventually(
                lambda: httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200,
                60,
                what="replaced",
            )
            assert victim.pid not in {w.pid for w in workers(supervisor)}
            assert len(workers(supervisor)) == 2
            runners = gauge(server.url, "perfserve_runners")
            assert runners == {"sklearn_fp32": 2, "onnx_fp32": 2, "onnx_int8": 2}
            # The survivor's held requests end in 408; the victim's counted nowhere.
            eventually(lambda: gauge(server.url, inflight) == {"": 0}, 20, what="drained")
            assert set(gauge(server.url, "perfserve_queue_depth").values()) == {0}
        finally:
            for sock in held:
                sock.close()

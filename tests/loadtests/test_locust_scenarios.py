"""The locustfile, run by real Locust (headless, seconds long) against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import ServerProcess, free_port, running_server
from tests.utils import poll

pytestmark = pytest.mark.integration  # Locust against real servers

LOCUSTFILE = str(Path(__file__).parents[2] / "loadtests" / "locustfile.py")


def locust(
    host: str, store: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--host", host, "--headless"]
    return subprocess.Popen(
        [*command, "--metrics-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PERFSERVE_STORE": str(store), **(env or {})},
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout_s)
    return process.returncode, output


def test_bad_requests_answered_4xx_pass_and_metrics_are_served(
    server: ServerProcess, store: Path
) -> None:
    port = free_port()
    run = locust(
        server.url, store, "-u", "6", "-r", "6", "-t", "5s", "--user-rps", "8",
        "--bad-share", "0.25", "--max-p99-ms", "2000", "--metrics-port", str(port),
    )  # fmt: skip

    def scraped() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.TransportError:
            return ""  # Locust not listening yet

    # Read while Locust runs: its exporter goes with it.
    metrics = poll(scraped, lambda text: 'outcome="bad_input"' in text, 20, every_s=0.5)
    code, output = finish(run)
    assert code == 0, output
    assert "[bad input]" in output  # bad requests were sent, grouped under their own name
    assert "0(0.00%)" in output.split("Aggregated")[-2]  # and none failed
    assert "from scheduled time: n=" in output
    assert "perfserve_loadgen_target_rps 48.0" in metrics  # 6 users x 8 req/s
    assert 'perfserve_loadgen_requests_total{outcome="bad_input"' in metrics
    assert 'perfserve_loadgen_latency_seconds_bucket{le="0.0001",variant="sklearn_fp32"}' in metrics
    assert "perfserve_loadgen_late_arrivals_total" in metrics


class Failing(BaseHTTPRequestHandler):
    """A real HTTP endpoint that answers every request with a 500."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(500)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def failing_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_500_fails_the_run_even_for_a_bad_request(failing_url: str, store: Path) -> None:
    run = locust(failing_url, store, "-u", "2", "-r", "2", "-t", "3s", "--user-rps", "10")
    code, output = finish(run)
    assert code == 1
    assert "fail ratio 100.00%" in output
    assert "answered 500" in output  # the failure says why


def test_the_p99_gate_sets_the_exit_code(server: ServerProcess, store: Path) -> None:
    run = locust(
        server.url, store, "SingleRowUser", "-u", "2", "-r", "2", "-t", "3s",
        "--user-rps", "10", "--max-p99-ms", "0.001",
    )  # fmt: skip
    code, output = finish(run)
    assert code == 1
    assert "load test gate failed: p99" in output


def test_a_load_shape_drives_the_run_and_stops_it(server: ServerProcess, store: Path) -> None:
    shape = {
        "PERFSERVE_SHAPE": "spike",
        "PERFSERVE_SHAPE_BASE_USERS": "2",
        "PERFSERVE_SHAPE_SPIKE_USERS": "8",
        "PERFSERVE_SHAPE_BASE_SECONDS": "1",
        "PERFSERVE_SHAPE_SPIKE_SECONDS": "1.5",
        "PERFSERVE_SHAPE_RECOVER_SECONDS": "1",
    }
    run = locust(server.url, store, "CanaryUser", "--user-rps", "10", env=shape)
    code, output = finish(run)
    assert code == 0, output
    assert "Shape test updating to 8 users" in output
    assert "Shape test completed" in output


def test_the_locustfile_lists_its_options_in_locusts_help() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "loadtests.locustfile"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "--run-time" in text  # Locust's own options
    assert "Requests per second each user sends. (default: 1.0; env PERFSERVE_USER_RPS)" in text
    for flag in ("--store", "--bad-share", "--max-p99-ms", "--canary-users", "--batch-rows"):
        assert flag in text


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_users_speak_another_protocol_at_a_url(
    server: ServerProcess, store: Path, protocol: str
) -> None:
    command = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless"]
    command += ["--url", server.url, "--protocol", protocol, "--metrics-port", "0"]
    command += ["-u", "4", "-r", "4", "-t", "4s", "--user-rps", "5", "--bad-share", "0.2"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PERFSERVE_STORE": str(store)},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    split = "/v2/models/perfserve/infer" if protocol == "v2" else "/v1/models/perfserve:predict"
    assert split in output  # SingleRowUser and CanaryUser through the split, in the protocol
    assert "0(0.00%)" in output.split("Aggregated")[-2]


@pytest.mark.parametrize(
    ("shift", "words"),
    [("nope=2", ["--shift nope", "mean radius"]), ("mean radius=x", ["--shift", "FEATURE=SCALE"])],
)
def test_a_bad_shift_is_one_line_and_exit_2(store: Path, shift: str, words: list[str]) -> None:
    run = locust("http://127.0.0.1:9", store, "-u", "1", "-t", "2s", "--shift", shift)
    code, output = finish(run)
    assert code == 2, output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "error:" in line]
    for word in words:
        assert word in line


def test_zipf_bodies_are_answered_from_a_row_cache_at_about_their_share(store: Path) -> None:
    with running_server(store, options=["--cache-rows", "512"]) as cached:
        run = locust(
            cached.url, store, "SingleRowUser", "-u", "4", "-r", "4", "-t", "6s",
            "--user-rps", "25", "--bad-share", "0", "--bodies", "zipf:0.9",
        )  # fmt: skip
        code, output = finish(run)
        metrics = httpx.get(f"{cached.url}/metrics").text
    assert code == 0, output
    counts = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "perfserve_cache_requests_total"
        and sample.labels["variant"] == "sklearn_fp32"
    }
    # Each user first meets the popular rows uncached: a little under 0.9 in a short run.
    assert counts["hit"] + counts["miss"] > 200
    assert 0.7 < counts["hit"] / (counts["hit"] + counts["miss"]) < 0.95

"""What a slow, oversized or unauthorised client can make a real server do: little.

Clients here are raw sockets, so a body can really arrive a byte at a time and a
request can declare a body it never sends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_TOKEN, body, eventually, run_perfserve, server_timing

BODY_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 2
LIMIT_CONCURRENCY = 32
WRONG_TOKEN = "wrong-token-0c5e91d7"


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    token_file = tmp_path_factory.mktemp("secrets") / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    token_file.chmod(0o600)
    options = [
        *("--admin-token-file", str(token_file)),
        *("--body-timeout-s", str(BODY_TIMEOUT_S)),
        *("--limit-concurrency", str(LIMIT_CONCURRENCY)),
        *("--keep-alive-s", str(KEEP_ALIVE_S)),
    ]
    with running_server(store, options=options) as running:
        yield running


def port(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def exchange(
    server: ServerProcess,
    head: str,
    trickle: bytes = b"",
    every_s: float = 0.2,
    sent: threading.Event | None = None,
) -> tuple[int, bytes, float]:
    """Send `head`, then `trickle` one byte every `every_s` until the server answers;
    the status, the whole answer up to the server closing, and the seconds it took.
    `sent` is set once the head is out, for a test that must know the request is in flight."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(server)), timeout=15) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode())
        if sent is not None:
            sent.set()
        answer = b""
        for byte in trickle:
            sock.settimeout(every_s)
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                sock.sendall(bytes([byte]))
        sock.settimeout(15)
        try:
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
        except ConnectionResetError:
            pass  # closed with bytes we sent still unread: the kernel resets instead
    status = int(answer.split(b" ", 2)[1])
    return status, answer, time.monotonic() - started


def post_head(path: str, length: int, *extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [*extra, f"Content-Length: {length}", "", ""]
    return "\n".join(lines)


def test_a_slow_prediction_body_gets_408_while_others_are_served(
    server: ServerProcess, holdout: Dataset
) -> None:
    answers: list[tuple[int, bytes, float]] = []
    in_flight = threading.Event()
    slow = threading.Thread(
        target=lambda: answers.append(
            exchange(server, post_head("/predict", 500), b"{" * 500, sent=in_flight)
        )
    )
    slow.start()
    assert in_flight.wait(15)
    payload = body(holdout.features[:1])
    others = [httpx.post(f"{server.url}/predict", json=payload) for _ in range(5)]
    slow.join(30)
    assert [response.status_code for response in others] == [200] * 5
    status, answer, seconds = answers[0]
    assert status == 408 and b"did not arrive within 1 s" in answer
    assert BODY_TIMEOUT_S <= seconds < BODY_TIMEOUT_S + 10  # watchdog period plus a loaded box
    assert b"connection: close" in answer.lower()


def test_a_slow_admin_body_gets_408(server: ServerProcess) -> None:
    head = post_head("/traffic", 500, f"Authorization: Bearer {ADMIN_TOKEN}").replace("POST", "PUT")
    status, answer, seconds = exchange(server, head, b" " * 500)
    assert status == 408 and b"did not arrive" in answer and seconds < BODY_TIMEOUT_S + 10


def test_an_admin_request_without_the_token_is_refused_before_its_body(
    server: ServerProcess,
) -> None:
    # Declares 100 MB and sends none of it: the answer comes from the headers alone.
    head = post_head("/traffic", 100_000_000, f"Authorization: Bearer {WRONG_TOKEN}")
    status, answer, _ = exchange(server, head.replace("POST", "PUT"))
    assert status == 401 and b"wrong admin token" in answer
    assert WRONG_TOKEN.encode() not in answer
    status, _, _ = exchange(server, post_head("/rollout/start", 10_000_000))
    assert status == 401  # any state-changing route, even one FastAPI does not know
    log = server.log()
    assert "refused PUT '/traffic' from 127.0.0.1: wrong admin token" in log
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'perfserve_rejected_requests_total{reason="unauthorized"} 2.0' in metrics
    assert WRONG_TOKEN not in log


def test_a_refused_admin_call_through_a_proxy_logs_whom_it_was_forwarded_for(
    server: ServerProcess,
) -> None:
    headers = {"Authorization": f"Bearer {WRONG_TOKEN}", "X-Forwarded-For": "203.0.113.7"}
    assert httpx.put(f"{server.url}/traffic", headers=headers, json={}).status_code == 401
    assert "from 127.0.0.1 (forwarded for 203.0.113.7): wrong admin token" in server.log()


def test_an_oversized_admin_body_is_refused_with_413(server: ServerProcess) -> None:
    head = post_head("/traffic", 100_000, f"Authorization: Bearer {ADMIN_TOKEN}")
    status, answer, _ = exchange(server, head.replace("POST", "PUT"))
    assert status == 413 and b"65536" in answer
    chunked = httpx.put(
        f"{server.url}/traffic",
        content=iter([b"{" + b" " * 70_000]),  # no length: sent chunked
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert chunked.status_code == 413


def test_the_token_file_allows_admin_changes(server: ServerProcess) -> None:
    split = {"weights": {"sklearn_fp32": 1.0}}
    assert httpx.put(f"{server.url}/traffic", json=split, headers=ADMIN).status_code == 200


@pytest.mark.integration
def test_a_token_on_the_command_line_is_refused_without_echoing_it(store: Path) -> None:
    refused = run_perfserve("serve", "--store", str(store), "--admin-token", WRONG_TOKEN)
    assert refused.returncode == 2
    assert "PERFSERVE_ADMIN_TOKEN" in refused.stderr and "--admin-token-file" in refused.stderr
    assert WRONG_TOKEN not in refused.stderr


def test_predict_wants_a_json_body(server: ServerProcess, holdout: Dataset) -> None:
    text = httpx.post(
        f"{server.url}/predict",
        content=httpx.Request("POST", "/", json=body(holdout.features[:1])).read(),
        headers={"content-type": "text/plain"},
    )
    assert text.status_code == 415 and "application/json" in text.json()["detail"]
    charset = {"content-type": "application/json; charset=utf-8"}
    plain_json = httpx.Request("POST", "/", json=body(holdout.features[:1])).read()
    answered = httpx.post(f"{server.url}/predict", content=plain_json, headers=charset)
    assert answered.status_code == 200


def test_an_unknown_variant_is_not_echoed_whole(server: ServerProcess, holdout: Dataset) -> None:
    name = "x" * 5000
    refused = httpx.post(
        f"{server.url}/predict", json=body(holdout.features[:1]), headers={"X-Variant": name}
    )
    assert refused.status_code == 404 and len(refused.content) < 300


def test_the_servers_time_counts_from_the_requests_first_byte(
    server: ServerProcess, holdout: Dataset
) -> None:
    payload = json.dumps(body(holdout.features[:1])).encode()
    head = post_head("/models/onnx_int8/predict", len(payload)).replace("\n", "\r\n").encode()
    with socket.create_connection(("127.0.0.1", port(server)), timeout=15) as sock:
        sock.sendall(head[:10])
        time.sleep(0.3)  # the behaviour under test: a head that arrives late
        sock.sendall(head[10:] + payload)
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 200")
    timing = next(line for line in answer.splitlines() if line.startswith("server-timing:"))
    assert server_timing(timing.partition(": ")[2])["total"] >= 300


def test_slow_headers_are_cut_off(server: ServerProcess) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(server)), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            for byte in b"Host: a-very-slow-client\r\n":
                sock.sendall(bytes([byte]))
                time.sleep(0.2)  # the behaviour under test: a client that trickles
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server while we trickled
        sock.settimeout(15)
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:
            answer = b""  # closed with our last bytes unread
        assert answer == b""  # closed, never answered
    assert KEEP_ALIVE_S <= time.monotonic() - started < KEEP_ALIVE_S + 10


def test_a_keep_alive_connection_idle_after_its_answer_is_closed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", port(server)), timeout=15) as sock:

        def ask() -> bytes:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            return sock.recv(65536)

        assert ask().startswith(b"HTTP/1.1 200")
        for _ in range(2):  # a connection in use stays open past the keep-alive time
            time.sleep(KEEP_ALIVE_S * 0.6)
            assert ask().startswith(b"HTTP/1.1 200")
        idle_from = time.monotonic()
        assert sock.recv(1024) == b""  # then closed, once idle for the keep-alive time
    assert KEEP_ALIVE_S * 0.5 <= time.monotonic() - idle_from < KEEP_ALIVE_S + 10


def test_idle_connections_are_bounded(server: ServerProcess) -> None:
    idle = [socket.create_connection(("127.0.0.1", port(server))) for _ in range(LIMIT_CONCURRENCY)]
    try:  # full once the server has accepted every one of them
        eventually(lambda: httpx.get(f"{server.url}/healthz").status_code == 503)
        for sock in idle:  # a connection that never sends its headers is closed
            sock.settimeout(KEEP_ALIVE_S + 10)
            assert sock.recv(1024) == b""
    finally:
        for sock in idle:
            sock.close()
    eventually(lambda: httpx.get(f"{server.url}/healthz").status_code == 200)

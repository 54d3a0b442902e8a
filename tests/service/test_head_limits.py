"""Request heads are bounded before anything reads them: too many headers or too many
bytes get 431 and a closed connection, a 32 MiB header value neither stalls the event
loop nor grows the process, and a flood of header lines leaves its memory where it was.
A body sharing the head's first packet is not mistaken for header bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import eventually

pytestmark = pytest.mark.integration

MAX_HEAD_BYTES = 64 * 1024  # the defaults of Settings.max_header_bytes and max_headers
MAX_HEADERS = 100


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    with running_server(store) as running:
        yield running


def exchange(server: ServerProcess, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `request` whole on a new connection; everything the server answers until it
    closes or goes quiet."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # Refused before it was all sent: the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not answer.startswith(b"HTTP/1.1 431"):
                    length = int(answer.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                    if len(answer.split(b"\r\n\r\n", 1)[1]) >= length:
                        break
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def head(headers: list[bytes], method: bytes = b"GET", path: bytes = b"/healthz") -> bytes:
    return b"%s %s HTTP/1.1\r\nhost: x\r\n%s\r\n" % (method, path, b"".join(headers))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_header_count_is_bounded(server: ServerProcess) -> None:
    allowed = [b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS - 1)]  # with host: 100
    assert exchange(server, head(allowed)).startswith(b"HTTP/1.1 200")
    refused = exchange(server, head([*allowed, b"x-one-more: v\r\n"]))
    assert refused.startswith(b"HTTP/1.1 431"), refused[:200]
    assert b"connection: close" in refused and b"more than 100 request headers" in refused


def test_the_head_bytes_are_bounded(server: ServerProcess) -> None:
    fits = head([b"x-big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n"])
    assert len(fits) <= MAX_HEAD_BYTES
    assert exchange(server, fits).startswith(b"HTTP/1.1 200")
    refused = exchange(server, head([b"x-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n"]))
    assert refused.startswith(b"HTTP/1.1 431"), refused[:200]
    assert b"exceeds 65536 bytes" in refused


def test_a_body_in_the_heads_packet_is_not_counted_as_head(
    server: ServerProcess, holdout: Dataset
) -> None:
    rows = np.resize(holdout.features, (1000, holdout.features.shape[1]))
    body = orjson.dumps({"instances": rows.tolist()})
    assert len(body) > 4 * MAX_HEAD_BYTES
    request = head(
        [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)],
        b"POST",
        b"/predict",
    )
    answer = exchange(server, request + body)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_a_32_mib_header_value_is_refused_without_stalling_or_growing(
    server: ServerProcess,
) -> None:
    before = rss_bytes(server.process.pid)
    stalls: list[float] = []
    probing, stop = threading.Event(), threading.Event()

    def probe() -> None:  # how long /healthz takes on another connection meanwhile
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                client.get("/healthz").raise_for_status()
                stalls.append(time.monotonic() - started)
                probing.set()
                time.sleep(0.01)  # a probe every 10 ms: often enough to see a stall

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        assert probing.wait(15), "/healthz never answered"
        value = b"a" * (32 * 1024 * 1024)
        answer = exchange(server, head([b"x-huge: " + value + b"\r\n"]))
        answered = len(stalls)
        eventually(lambda: len(stalls) > answered, every_s=0.01, what="a probe after it")
    finally:
        stop.set()
        prober.join()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert max(stalls) < 0.5, f"/healthz took up to {max(stalls):.3f} s"
    assert rss_bytes(server.process.pid) - before < 16 * 1024 * 1024


def test_a_flood_of_header_lines_leaves_memory_where_it_was(server: ServerProcess) -> None:
    before = rss_bytes(server.process.pid)
    lines = b"".join(b"x-line-%06d: %s\r\n" % (i, b"v" * 20) for i in range(400_000))  # 14 MB

    def flood() -> None:
        assert exchange(server, head([lines])).startswith(b"HTTP/1.1 431")

    floods = [threading.Thread(target=flood) for _ in range(4)]
    for thread in floods:
        thread.start()
    for thread in floods:
        thread.join()
    assert rss_bytes(server.process.pid) - before < 16 * 1024 * 1024
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_head_ending_across_two_packets_near_the_bound_is_accepted(
    server: ServerProcess, holdout: Dataset
) -> None:
    body = orjson.dumps({"instances": holdout.features[:300].tolist()})
    padding = b"x-pad: " + b"p" * (MAX_HEAD_BYTES - 300) + b"\r\n"
    request = head(
        [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body), padding],
        b"POST",
        b"/predict",
    )
    assert len(request) <= MAX_HEAD_BYTES < len(request) + len(body)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request[:-1])  # the blank line's last byte comes with the body
        time.sleep(0.3)  # the behaviour under test: two packets, the server reads the first alone
        sock.sendall(request[-1:] + body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]

"""Bad requests, in process and over HTTP: each gets a 4xx JSON error that names the problem."""

from __future__ import annotations

import httpx
import pytest

from perfserve_common.processes import ServerProcess

ROW = [1.0] * 30


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "message"),
    [
        ("POST", "/predict", b'{"instances": [[1, 2]]}', {}, 422, "the model expects 30"),
        ("POST", "/predict", b'{"instances": [[1, 2', {}, 400, "malformed JSON"),
        ("POST", "/predict", b'{"instances": [[NaN' + b", 1" * 29 + b"]]}", {}, 400, "NaN"),
        ("POST", "/predict", b'{"instances": [["a"' + b", 1" * 29 + b"]]}", {}, 422, '"a"'),
        ("POST", "/predict", b'{"instances": []}', {}, 422, "is empty"),
        ("POST", "/predict", b"", {}, 400, "body is empty"),
        ("POST", "/predict", b"[1, 2]", {}, 422, '"instances"'),
        ("POST", "/predict", b'{"instances": [[1]]}', {"X-Variant": "nope"}, 404, "unknown"),
        ("POST", "/models/nope/predict", b'{"instances": [[1]]}', {}, 404, "unknown variant"),
        ("GET", "/predict", b"", {}, 405, "use POST"),
        ("GET", "/no/such/path", b"", {}, 404, "Not Found"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    response = await client.request(method, path, content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]


async def test_too_many_rows_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"instances": [ROW] * 1025})
    assert response.status_code == 413
    assert "too many rows: 1025" in response.json()["detail"]


def test_an_oversized_body_is_refused_before_it_is_parsed(server: ServerProcess) -> None:
    huge = b'{"instances": [' + b"[" + b"1," * 3_000_000 + b"1]]}"
    response = httpx.post(f"{server.url}/predict", content=huge)
    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]


def test_an_oversized_chunked_body_is_refused_too(server: ServerProcess) -> None:
    def chunks() -> object:
        yield b'{"instances": [['
        for _ in range(600):
            yield b"1.0," * 2000

    response = httpx.post(f"{server.url}/predict", content=chunks())  # type: ignore[arg-type]
    assert response.status_code == 413


async def test_the_server_survives_every_bad_request(client: httpx.AsyncClient) -> None:
    good = await client.post("/predict", json={"instances": [ROW]})
    assert good.status_code == 200

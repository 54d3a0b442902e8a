"""The HTTP-stack floor: an ASGI app that reads the body and returns a fixed answer.

Served by the same uvicorn options as perfserve, it measures what uvicorn, httptools
and the socket cost per request, with no framework and no model.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"variant":"bare","predictions":[0]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    message = await receive()
    while message.get("more_body", False):
        message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

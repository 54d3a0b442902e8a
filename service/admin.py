"""The admin token, and the guard every non-prediction request passes before FastAPI.

FastAPI reads and parses a body before any dependency runs, so a token checked by a
dependency comes after an unauthenticated client has had the server read whatever it
sent. The guard runs first, as raw ASGI: a request that changes state (any method but
GET, HEAD and OPTIONS: `PUT /traffic`, the `/rollout` actions) and every request under
`/rollout` (its status too: the plan, the owners' host names and the judge's figures are
an operator's view; `/metrics` carries the public gauges) is refused on its headers
alone unless it carries the admin token, and every body bound for FastAPI is capped at
`admin_max_body_bytes` and read within `body_timeout_s` before FastAPI sees it.
Predictions and the plain `/metrics` scrape never come here: `PredictEndpoint` and
`ScrapeEndpoint` answer them in front of the guard.
"""

from __future__ import annotations

import logging
import time

from starlette.responses import JSONResponse

from service.payload import Reject
from service.predict import ASGIApp, Message, Receive, Scope, Send
from service.state import Service
from service.tokens import admin_refusal

log = logging.getLogger("perfserve")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_PREFIX = "/rollout"
"""Every method under this path needs the admin token."""


class ManagementGuard:
    """Token first, then a bounded body, then FastAPI (see the module docstring)."""

    def __init__(self, service: Service, app: ASGIApp) -> None:
        self.service = service
        self.app = app
        self.max_body = service.settings.admin_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            headers = dict(scope["headers"])
            if scope["method"] not in SAFE_METHODS or _admin_path(scope["path"]):
                self._authorize(scope, headers.get(b"authorization"))
            length = headers.get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.max_body:
                raise Reject(413, "too_large", f"body exceeds {self.max_body} bytes")
            body = await self.service.body_deadlines.read(
                receive, self.max_body, time.perf_counter()
            )
        except Reject as reject:
            self.service.count_rejection(reject.reason)
            return await _refuse(reject, scope, receive, send)
        await self.app(scope, _replay(body, receive), send)

    def _authorize(self, scope: Scope, authorization: bytes | None) -> None:
        refusal = admin_refusal(
            self.service.settings.admin_token,
            None if authorization is None else authorization.decode("latin-1"),
        )
        if refusal is not None:
            client = (scope.get("client") or ("?", 0))[0]
            forwarded = dict(scope["headers"]).get(b"x-forwarded-for")
            if forwarded is not None:
                client += f" (forwarded for {forwarded.decode('latin-1')[:100]})"
            path = str(scope["path"])[:100]
            log.warning("refused %s %r from %s: %s", scope["method"], path, client, refusal.message)
            raise refusal


def _admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


async def _refuse(reject: Reject, scope: Scope, receive: Receive, send: Send) -> None:
    # The body was not read (or not all of it): close rather than parse it as a request.
    headers = {"connection": "close"}
    if reject.status == 401:
        headers["www-authenticate"] = "Bearer"
    response = JSONResponse({"detail": reject.message}, reject.status, headers)
    await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands FastAPI the body already read, then defers to the client."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

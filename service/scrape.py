"""A plain `GET /metrics` answered in front of the admin guard and FastAPI.

A scrape runs on the event loop that serves predictions. Rendering one process's text
costs about half a millisecond (service/metrics/rendering.py); the guard's body read and
FastAPI's routing, dependency and response objects add about 0.3 ms more, which is
the same on every route (`/healthz` costs that much too). The plain scrape Prometheus
sends, with one worker, skips them the way predictions do. A scrape that asks for some
metrics only (`?name[]=`) and the merged text of several workers stay with FastAPI's
route (service/api.py), which also documents the endpoint.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from service.metrics import multiprocess_mode
from service.predict import ASGIApp, Receive, Scope, Send
from service.state import Service

METRICS_PATH = "/metrics"
CONTENT_TYPE = (b"content-type", CONTENT_TYPE_LATEST.encode())


class ScrapeEndpoint:
    """Answers a plain one-process scrape itself; passes every other request on."""

    def __init__(self, service: Service, app: ASGIApp) -> None:
        self.metrics = service.metrics
        self.app = app
        self.one_process = not multiprocess_mode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == METRICS_PATH
            and scope["method"] == "GET"
            and not scope["query_string"]
            and self.one_process
        ):
            return await self._scrape(send)
        await self.app(scope, receive, send)

    async def _scrape(self, send: Send) -> None:
        """Folded hot-path metrics flushed first, as the FastAPI route does, so that the
        text shows every request answered before it."""
        self.metrics.folding.flush()
        body = self.metrics.renderer.render()
        headers = [CONTENT_TYPE, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

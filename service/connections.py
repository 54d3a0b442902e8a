"""uvicorn's httptools protocol, with a deadline on a request's headers, the request's
arrival time in its scope, and one write per answer.

uvicorn closes a keep-alive connection that stays idle between requests, but not one
that opens and sends nothing, or sends its headers a byte at a time: such a connection
is held forever, and `limit_concurrency` of them lock everyone else out. Here a
connection waiting for a request's headers is closed when they are not complete within
the keep-alive time (`keep_alive_s`) of the connection opening, of its last answer, or
of the request's first byte; idle keep-alive connections are the case with no byte.

One timer per connection, re-armed only when it fires; a request costs three attribute
writes and two clock reads, no timer of its own. uvicorn arms a timer of its own after
every answer and cancels it on the next request; with a thousand connections that timer
heap is a few percent of the server's time, so it is not armed here.

The server's own time for a request starts when its first byte is parsed, not when the
app is called: uvicorn's parsing, the scope and the task that runs the app come before
that call, about 40 µs on an idle server, and they are the server's work too. The
moment rides in the scope's extensions under `ARRIVED` (`time.perf_counter()` seconds).
"""

from __future__ import annotations

import asyncio
import time

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

ARRIVED = "perfserve.arrived"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """`http="httptools"` plus the header deadline (see the module docstring)."""

    waiting_since: float | None = None
    _header_check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        self._header_check = self.loop.call_later(self.timeout_keep_alive, self._check_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_check is not None:
            self._header_check.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self.waiting_since = self.loop.time()
        super().on_message_begin()
        self.scope["extensions"] = {ARRIVED: time.perf_counter()}  # type: ignore[dict-item]

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        super().on_headers_complete()
        self.cycle.__class__ = OneWriteCycle  # the cycle's own class, one write per answer

    def on_response_complete(self) -> None:
        """uvicorn's, with the connection's own timer keeping the idle deadline."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            self._start_asgi_task(*self.pipeline.pop())
        else:
            self.waiting_since = self.loop.time()

    def _check_headers(self) -> None:
        since, now = self.waiting_since, self.loop.time()
        if since is not None and now - since >= self.timeout_keep_alive:
            self.transport.close()
            return
        wait = self.timeout_keep_alive if since is None else since + self.timeout_keep_alive - now
        self._header_check = self.loop.call_later(wait, self._check_headers)


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, with a response's head and the first part of its body
    leaving in one write.

    uvicorn writes the status line and headers when the app sends `http.response.start`
    and the body when it sends `http.response.body`: two writes, so two TCP segments,
    and on loopback the sending core also runs the receiving side of each. A prediction
    is small, so one write carries all of it. The head is held only between those two
    messages; a HEAD request's head, which no body follows, leaves at once.
    """

    held_head = b""

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and self.scope["method"] != "HEAD":
            transport = self.transport
            self.transport = capture = _Capture()  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self.held_head = capture.written
            return
        if not self.held_head:
            return await super().send(message)
        transport = self.transport
        self.transport = prefixed = _Prefixed(transport, self.held_head)  # type: ignore[assignment]
        self.held_head = b""
        try:
            await super().send(message)
        finally:
            self.transport = transport
            if not self.disconnected:
                prefixed.flush()


class _Capture:
    """Stands in for the transport while uvicorn writes a response head."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


class _Prefixed:
    """Stands in for the transport while uvicorn writes a body: its first write carries
    the held head too; whatever else uvicorn asks of the transport goes through."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.transport.write(head + data if head else data)

    def flush(self) -> None:
        if self.head:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)

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

A request's head (request line and headers) is bounded too, before anything reads it:
at most `max_head_bytes` bytes and `max_headers` headers, else 431 and the connection is
closed. httptools accumulates a header's name and value in memory until the header is
complete, by repeated concatenation, so an unbounded value grows the process (and costs
the loop quadratic copying) before any callback sees it: the bytes are counted as they
arrive, and the parser is fed nothing more once the head passes the bound. Only the
chunk that passes the bound is searched for the head's end (a body may share it).

The server's own time for a request starts when its first byte is parsed, not when the
app is called: uvicorn's parsing, the scope and the task that runs the app come before
that call, about 40 µs on an idle server, and they are the server's work too. The
moment rides in the scope's extensions under `ARRIVED` (`time.perf_counter()` seconds).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httptools
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

ARRIVED = "perfserve.arrived"
HEAD_END = b"\r\n\r\n"
LINGER_S = 2.0
"""How long a connection whose head was refused keeps draining the client's bytes."""
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past its bounds."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """`http="httptools"` plus the header deadline and the head's bounds (see the module
    docstring). uvicorn builds one per connection; give it the bounds with
    `functools.partial(HeaderDeadlineProtocol, max_head_bytes=..., max_headers=...)`."""

    waiting_since: float | None = None
    _header_check: asyncio.TimerHandle | None = None
    head_bytes: int | None = 0
    """Bytes of the current request's head received so far; None once it is complete."""
    _head_chunk = b""
    """The head's previous chunk (its end may hold part of the blank line that ends it)."""
    headers_seen = 0
    _lingering: asyncio.TimerHandle | None = None
    """Set once a head was refused: the connection only drains until it closes."""

    def __init__(
        self,
        *args: Any,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        self._header_check = self.loop.call_later(self.timeout_keep_alive, self._check_headers)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's bytes counted before the parser sees them."""
        if self._lingering is not None:
            return  # a refused head's remaining bytes: dropped unread
        if self.head_bytes is not None:
            before = self.head_bytes
            self.head_bytes = before + len(data)
            if self.head_bytes > self.max_head_bytes and not self._head_ends_within(data, before):
                return self._refuse_head(f"request head exceeds {self.max_head_bytes} bytes")
            self._head_chunk = data
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, HeadTooLarge):
                return self._refuse_head(str(error.__context__))
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _head_ends_within(self, data: bytes, before: int) -> bool:
        """Whether the head ends in `data` within the bound (what follows is body)."""
        tail = self._head_chunk[-3:]
        end = (tail + data).find(HEAD_END)
        return end >= 0 and before + end + len(HEAD_END) - len(tail) <= self.max_head_bytes

    def _refuse_head(self, reason: str) -> None:
        """431, then a lingering close: the rest of the head is never parsed or kept.

        Closing at once while the client is still sending would make the kernel answer
        its next bytes with a reset, which can discard the 431 before the client reads
        it. So the write side is shut (the client sees the answer, then the end), what
        still arrives is dropped unread, and the connection closes when the client does
        or after `LINGER_S`, as nginx's lingering close does."""
        body = json.dumps({"detail": reason}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        self.head_bytes = None
        self._lingering = self.loop.call_later(LINGER_S, self.transport.close)
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_seen += 1
        if self.headers_seen > self.max_headers:
            raise HeadTooLarge(f"more than {self.max_headers} request headers")
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_bytes = 0  # the next bytes on this connection start a new head
        self._head_chunk = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_check is not None:
            self._header_check.cancel()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """The client finished sending: a lingering close ends here."""
        if self._lingering is not None:
            self.transport.close()
            return
        super().eof_received()

    def on_message_begin(self) -> None:
        self.waiting_since = self.loop.time()
        self.headers_seen = 0
        super().on_message_begin()
        self.scope["extensions"] = {ARRIVED: time.perf_counter()}  # type: ignore[dict-item]

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        self.head_bytes = None
        self._head_chunk = b""  # it may hold body bytes too: not kept past the head
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

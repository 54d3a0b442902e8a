"""uvicorn's httptools protocol, with a deadline on a request's headers.

uvicorn closes a keep-alive connection that stays idle between requests, but not one
that opens and sends nothing, or sends its headers a byte at a time: such a connection
is held forever, and `limit_concurrency` of them lock everyone else out. Here a request's
headers must be complete within the keep-alive time (`keep_alive_s`) of the connection
opening or of the request's first byte, or the connection is closed.

One timer per connection, re-armed only when it fires; a request costs two attribute
writes and a clock read, no timer of its own.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """`http="httptools"` plus the header deadline (see the module docstring)."""

    headers_since: float | None = None
    _header_check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers_since = self.loop.time()
        self._header_check = self.loop.call_later(self.timeout_keep_alive, self._check_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_check is not None:
            self._header_check.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self.headers_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.headers_since = None
        super().on_headers_complete()

    def _check_headers(self) -> None:
        since, now = self.headers_since, self.loop.time()
        if since is not None and now - since >= self.timeout_keep_alive:
            self.transport.close()
            return
        wait = self.timeout_keep_alive if since is None else since + self.timeout_keep_alive - now
        self._header_check = self.loop.call_later(wait, self._check_headers)

"""The native engine's HTTP/1.1 client: raw asyncio protocols parsed by httptools.

Requests arrive already encoded (head and body in one bytes object), so a send is one
`transport.write`. Each connection carries one request at a time and is kept alive;
the pool hands out the connection freed most recently (a stack), so a modest rate
runs over a few warm connections instead of spreading over hundreds, which would cost
the server an epoll wake-up and a read per request on a cold socket. Past
`max_connections` busy, arrivals wait in line for the next free connection (and are
counted as blocked: the server is not keeping up, or the pool is too small).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

from loadtests.checks import server_timing_total_s


@dataclass(slots=True)
class Request:
    """One arrival: when it was due, what to send, and when it actually went out."""

    due: float
    data: bytes
    step: int
    sent: float = 0.0


@dataclass(slots=True)
class Response:
    status: int
    """0 when no answer came (connection refused, reset or closed early)."""
    body: bytes
    variant: str | None
    server_s: float | None
    """The server's own `Server-Timing` total, in seconds, when it sent one."""
    done: float


Answered = Callable[[Request, Response], None]


class Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls the `on_*` methods while parsing."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: Request | None = None
        self._body: list[bytes] = []
        self._variant: str | None = None
        self._server_s: float | None = None

    def send(self, request: Request) -> None:
        assert self.transport is not None
        self.request = request
        request.sent = time.monotonic()
        self.transport.write(request.data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.pool.connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"server-timing":
            self._server_s = server_timing_total_s(value)
        elif name == b"x-variant":
            self._variant = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        response = Response(
            self.parser.get_status_code(),
            b"".join(self._body),
            self._variant,
            self._server_s,
            time.monotonic(),
        )
        self._body, self._variant, self._server_s = [], None, None
        if request is not None:
            self.pool.answered(self, request, response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class Pool:
    """Keep-alive connections to one host, at most `max_connections` of them."""

    def __init__(self, host: str, port: int, max_connections: int, answered: Answered) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.on_answer = answered
        self.idle: list[Connection] = []
        self.waiting: deque[Request] = deque()
        self.open = 0
        """Connections open or opening."""
        self.busy = 0
        """Requests sent and not yet answered, or bound to a connection being opened."""
        self._pending: dict[Connection, Request] = {}

    @property
    def in_flight(self) -> int:
        return self.busy + len(self.waiting)

    def submit(self, request: Request) -> bool:
        """Send now if a connection is free or may be opened; False if it must wait."""
        if self.idle:
            self.busy += 1
            self.idle.pop().send(request)
            return True
        if self.open < self.max_connections:
            self.busy += 1
            self._open(request)
            return True
        self.waiting.append(request)
        return False

    def warm(self, connections: int) -> None:
        """Open idle connections until `connections` (at most `max_connections`) are open
        or opening: a burst then finds them ready instead of waiting for a handshake."""
        while self.open < min(connections, self.max_connections):
            self._open(None)

    def drop_waiting(self) -> list[Request]:
        dropped = list(self.waiting)
        self.waiting.clear()
        return dropped

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()

    def _open(self, request: Request | None) -> None:
        connection = Connection(self)
        self.open += 1
        if request is not None:
            self._pending[connection] = request
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_connection(lambda: connection, self.host, self.port))
        task.add_done_callback(lambda t: self._failed_to_open(connection, t))

    def _failed_to_open(self, connection: Connection, task: asyncio.Task[object]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.open -= 1
        request = self._pending.pop(connection, None)
        if request is not None:
            self._finish(request, Response(0, b"", None, None, time.monotonic()))

    def connected(self, connection: Connection) -> None:
        request = self._pending.pop(connection, None)
        if request is None:
            self._release(connection)
        else:
            connection.send(request)

    def answered(self, connection: Connection, request: Request, response: Response) -> None:
        if not connection.parser.should_keep_alive():
            assert connection.transport is not None
            connection.transport.close()
        else:
            self._release(connection)
        self._finish(request, response)

    def lost(self, connection: Connection) -> None:
        """A connection closed: whatever it carried gets no answer."""
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        request, connection.request = connection.request, None
        if request is not None:
            self._finish(request, Response(0, b"", None, None, time.monotonic()))
        if self.waiting and self.open < self.max_connections:
            self.busy += 1
            self._open(self.waiting.popleft())

    def _release(self, connection: Connection) -> None:
        if self.waiting:
            connection.send(self.waiting.popleft())
            self.busy += 1
        else:
            self.idle.append(connection)

    def _finish(self, request: Request, response: Response) -> None:
        self.busy -= 1
        self.on_answer(request, response)

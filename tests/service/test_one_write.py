"""One write per answer: the response head waits for the body and leaves with it."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from uvicorn._types import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope
from uvicorn.protocols.http.flow_control import FlowControl

from service.connections import OneWriteCycle


class Transport:
    """Records what the cycle writes, as the socket would receive it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(transport: Transport, method: str = "POST", keep_alive: bool = True) -> OneWriteCycle:
    return OneWriteCycle(
        scope=cast(HTTPScope, {"type": "http", "method": method, "http_version": "1.1"}),
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


def start(headers: list[tuple[bytes, bytes]]) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": 200, "headers": headers}


def body(data: bytes, more: bool = False) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": data, "more_body": more}


START = start([(b"content-length", b"2")])
BODY = body(b"{}")


async def test_the_head_waits_for_the_body_and_both_leave_in_one_write() -> None:
    transport = Transport()
    answer = cycle(transport)
    await answer.send(START)
    assert transport.writes == []
    await answer.send(BODY)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert answer.response_complete


async def test_a_head_request_gets_its_head_at_once() -> None:
    transport = Transport()
    answer = cycle(transport, method="HEAD")
    await answer.send(START)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]


async def test_a_streamed_body_leaves_its_first_part_with_the_head_then_part_by_part() -> None:
    transport = Transport()
    answer = cycle(transport)
    await answer.send(start([]))
    await answer.send(body(b"ab", more=True))
    await answer.send(body(b""))
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert transport.writes == [head + b"2\r\nab\r\n", b"0\r\n\r\n"]


async def test_a_closing_answer_is_written_whole_before_the_connection_closes() -> None:
    transport = Transport()
    answer = cycle(transport, keep_alive=False)
    await answer.send(START)
    await answer.send(BODY)
    assert transport.writes[0].endswith(b"\r\n\r\n{}")
    assert b"connection: close" in transport.writes[0]
    assert transport.closed

"""One native generator process: sends on schedule over keep-alive connections, records.

Started by the native engine's controller (loadtests/engines/native.py) as
`python -m loadtests.engines.native_generator FD URL MAX_IN_FLIGHT [CPU]`, one per core.
It runs a uvloop event loop with three sources of work: the arrival timer (a timerfd
armed at the next scheduled send, see timer.py), the connections' answers, and the
controller's commands on the socket FD (setup, warm, plan, stop, flush, quit). Every answer
is recorded into the window of its scheduled time (latency from schedule, from send,
and outside the server), sends and late sends into the window of their send; on each
flush the new windows go back to the controller in the recorder's wire form.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import uvloop

from loadtests import SPLIT
from loadtests.arrivals import arrival_times
from loadtests.checks import judge_answer, status_label
from loadtests.engines.base import Plan, Setup
from loadtests.engines.native_client import Pool, Request, Response
from loadtests.engines.timer import DeadlineTimer
from loadtests.recorder import Recorder, WindowKey, windows_to_wire
from loadtests.scenarios.pacing import LATE_TOLERANCE_S
from perfserve_common.protocols import ProtocolName, predict_path

USER_POPULATION = 10_000
WAKE_EARLY_S = 50e-6
EARLY_GAP_S = 200e-6
SEND_AHEAD_S = 100e-6
"""A wake sends the arrivals due this soon after it too, ahead of their time."""


def encode_requests(
    bodies: list[bytes], target: str, host: str, protocol: ProtocolName = "perfserve"
) -> list[bytes]:
    """Every request this process will send, encoded once: one per body for a variant;
    for the live split one per user id (routing is sticky by user) or per body, whichever
    are more, bodies and users in turn."""
    if target != SPLIT:
        path = predict_path(protocol, target)
        return [_encode(path, host, body) for body in bodies]
    users = list(range(USER_POPULATION))
    random.Random(0).shuffle(users)
    path = predict_path(protocol, None)
    # Every body at least once: a Zipf mix's order is what sets its hit ratio.
    return [
        _encode(path, host, bodies[n % len(bodies)], f"x-user-id: user-{users[n % len(users)]}\r\n")
        for n in range(max(len(users), len(bodies)))
    ]


def _encode(path: str, host: str, body: bytes, extra_headers: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra_headers}\r\n"
    )
    return head.encode() + body


class Generator:
    """The process's state: the plan being followed, the pool, the recorder."""

    def __init__(self, commands: Connection, url: str, max_in_flight: int) -> None:
        parts = urlsplit(url)
        self.commands = commands
        self.host = parts.netloc
        self.pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80, max_in_flight, self._on)
        self.recorder = Recorder()
        self.timer = DeadlineTimer()
        self.requests: list[bytes] = []
        self.rows_per_request = 1
        self.target = SPLIT
        self.plans: dict[int, tuple[Plan, float]] = {}
        """Each step's plan and its start on the monotonic clock."""
        self.plan: Plan | None = None
        self.schedule: Iterator[float] = iter(())
        self.next_due = 0.0
        self.next_request = 0
        self.done: asyncio.Future[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        loop.add_reader(self.timer.fd, self.on_timer)
        loop.add_reader(self.commands.fileno(), self.on_commands)
        # The loop made the socket non-blocking; a command or a flush's answer larger
        # than the socket buffer must still go through whole.
        os.set_blocking(self.commands.fileno(), True)
        self.commands.send(("ready",))
        await self.done
        self.pool.close()

    def on_timer(self) -> None:
        """Send every arrival that is due, then sleep until the next one.

        Waking from idle takes about 30 µs after the timer fires, so when the next
        arrival is far enough off the timer is set `WAKE_EARLY_S` before it and the
        last stretch is spun, unless an answer is outstanding: the loop must stay free to
        read it, so then the timer is simply set for the arrival itself. Spinning costs
        at most `WAKE_EARLY_S` of CPU per arrival, and only at rates low enough for
        gaps of `EARLY_GAP_S`, far from the generator's ceiling.

        Each wake also sends the arrivals due within `SEND_AHEAD_S` after it, ahead of
        their time, and their latency is timed from that send (see `_on`). A timer
        armed for a deadline microseconds away costs 15 to 25 µs of CPU on a virtual
        machine (the guest's write of the CPU's timer deadline traps to the
        hypervisor), so one wake per arrival would cap a core near 40,000 arrivals a
        second and keep it busy well below that, which reads as a generator out of
        breath. Sending a few arrivals up to 0.1 ms early keeps the rate exact and makes
        the arrivals only slightly burstier than the schedule, never slower."""
        self.timer.clear()
        plan = self.plan
        if plan is None:
            return
        now = time.monotonic()
        due = self.next_due
        if due > now:
            if self.pool.busy or due - now > WAKE_EARLY_S:
                self.timer.arm(due)
                return
            while (now := time.monotonic()) < due:
                pass
        requests = self.requests
        horizon = now + SEND_AHEAD_S
        while due <= horizon:
            request = Request(due, requests[self.next_request], plan.step)
            self.next_request = (self.next_request + 1) % len(requests)
            if not self.pool.submit(request):
                self.recorder.window(self._key(plan.step, due)).blocked += 1
            due = next(self.schedule)
        self.next_due = due
        self.timer.arm(due - WAKE_EARLY_S if due - now > EARLY_GAP_S else due)

    def on_commands(self) -> None:
        while self.commands.poll():
            try:
                kind, data = self.commands.recv()
            except EOFError:
                self._quit()
                return
            getattr(self, f"_{kind}")(data)

    def _setup(self, data: dict[str, Any]) -> None:
        setup = Setup(**data)
        self.requests = encode_requests(setup.bodies, setup.target, self.host, setup.protocol)
        self.rows_per_request = setup.rows_per_request
        self.target = setup.target
        self.next_request = 0

    def _plan(self, data: dict[str, Any]) -> None:
        self._stop(None)
        plan = Plan(**data["plan"])
        start = plan.start_wall - time.time() + time.monotonic()
        self.plans[plan.step] = (plan, start)
        self.schedule = arrival_times(
            start,
            plan.rate,
            plan.process,
            generator_index=data["index"],
            generators=plan.generators,
            seed=plan.seed * 1000 + data["index"],
        )
        self.next_due = next(self.schedule)
        self.plan = plan
        self.timer.arm(self.next_due)

    def _warm(self, connections: int) -> None:
        self.pool.warm(connections)

    def _stop(self, _: object) -> None:
        """Send what fell due before the stop, then drop the arrivals still waiting for a
        connection (counted as dropped in the window they were due)."""
        if self.plan is not None:
            self.on_timer()
        self.plan = None
        for request in self.pool.drop_waiting():
            self.recorder.window(self._key(request.step, request.due)).dropped += 1

    def _flush(self, flush_id: int) -> None:
        windows = windows_to_wire(self.recorder.take())
        self.commands.send(("windows", flush_id, windows, self.pool.in_flight))

    def _quit(self, _: object = None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _key(self, step: int, at: float) -> WindowKey:
        plan, start = self.plans[step]
        return step, max(0, int((at - start) // plan.window_s))

    def _on(self, request: Request, response: Response) -> None:
        """Record one answer (or one request that got none). Latency from schedule
        runs from the due time, or from the send if that came first (`SEND_AHEAD_S`),
        so an early send never shortens it."""
        done, due = response.done, request.due
        sent = request.sent or done
        plan, start = self.plans[request.step]
        step, width = plan.step, plan.window_s
        window = self.recorder.window
        sending = window((step, max(0, int((sent - start) // width))))
        sending.sent += 1
        sending.late += sent - due > LATE_TOLERANCE_S
        window((step, max(0, int((done - start) // width)))).completed += 1
        status = response.status
        verdict = judge_answer(status, response.body, self.rows_per_request, False)
        self.recorder.answer(
            (step, max(0, int((due - start) // width))),
            response.variant or self.target,
            verdict.outcome,
            status_label(status),
            done - min(due, sent),
            done - sent,
            response.server_s,
        )


def main(argv: list[str]) -> None:
    fd, url, max_in_flight = int(argv[0]), argv[1], int(argv[2])
    if len(argv) > 3:
        os.sched_setaffinity(0, {int(argv[3])})
    generator = Generator(Connection(fd), url, max_in_flight)
    # Nothing allocated from here on lives long enough to need the cyclic collector's
    # full passes; freezing what exists keeps them short.
    gc.collect()
    gc.freeze()
    uvloop.run(generator.run())


if __name__ == "__main__":
    main(sys.argv[1:])

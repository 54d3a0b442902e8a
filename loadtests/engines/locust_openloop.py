"""The sweep's open-loop generator on Locust: a dispatcher that sends on schedule.

Each generator process runs one `OpenLoopUser`, whose only task is a dispatcher: it
sleeps until the next scheduled arrival (loadtests/arrivals.py) and hands the request
to a new greenlet, so a slow answer never delays the next send. Up to `max_in_flight`
requests may be outstanding (the size of the connection pool); past that the dispatcher
waits for a free connection and the sends it makes late are counted as late arrivals
and measured from their scheduled time anyway. Arrivals still unsent when their step
ends are counted as dropped.

This file is also the locustfile of sweep workers (`perfserve sweep --workers N` starts
`locust -f loadtests/engines/locust_openloop.py --worker`); the controller sends them the request
bodies, then one plan per step (rate, arrival process, step and window clock).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict
from typing import Any

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from loadtests import SPLIT
from loadtests.arrivals import arrival_times
from loadtests.checks import post_checked, status_label
from loadtests.engines.base import Plan, Setup
from loadtests.harness import Harness
from loadtests.scenarios.pacing import LATE_TOLERANCE_S
from perfserve_common.protocols import ProtocolName, predict_path

SETUP, PLAN = "perfserve_setup", "perfserve_plan"
USER_POPULATION = 10_000
MAX_IN_FLIGHT = int(os.environ.get("PERFSERVE_MAX_IN_FLIGHT", "256"))
IDLE_POLL_S = 0.02


class Generator:
    """The per-process state behind the dispatcher: bodies, the current plan, the pool."""

    def __init__(self, harness: Harness, max_in_flight: int) -> None:
        self.harness = harness
        self.bodies: list[bytes] = []
        self.next_body = 0
        self.rows_per_request = 1
        self.target = SPLIT
        self.protocol: ProtocolName = "perfserve"
        self.plan: Plan | None = None
        self.plan_start = 0.0
        self.replaced_at = 0.0
        self.pool = Pool(max_in_flight)

    def setup(self, data: dict[str, Any]) -> None:
        setup = Setup(**data)
        self.bodies = list(setup.bodies)
        self.next_body = 0
        self.rows_per_request = setup.rows_per_request
        self.target = setup.target
        self.protocol = setup.protocol

    def set_plan(self, data: dict[str, Any]) -> None:
        self.replaced_at = time.perf_counter()
        plan = Plan(**data)
        self.plan_start = plan.start_wall - time.time() + time.perf_counter()
        self.plan = plan

    def window(self, plan: Plan, at: float) -> tuple[int, int]:
        return plan.step, max(0, int((at - self.plan_start) // plan.window_s))

    def dispatch(self, user: FastHttpUser) -> None:
        """Send on schedule, forever; a new plan restarts the schedule."""
        while True:
            plan = self.plan
            if plan is None or plan.rate <= 0:
                gevent.sleep(IDLE_POLL_S)
                continue
            self._follow(user, plan)

    def _follow(self, user: FastHttpUser, plan: Plan) -> None:
        runner = self.harness.environment.runner
        index: int = getattr(runner, "worker_index", 0)
        schedule = arrival_times(
            self.plan_start,
            plan.rate,
            plan.process,
            generator_index=index,
            generators=plan.generators,
            seed=plan.seed * 1000 + index,
        )
        for due in schedule:
            while self.plan is plan and (delay := due - time.perf_counter()) > 0:
                gevent.sleep(min(delay, IDLE_POLL_S))
            if self.plan is not plan:
                self._drop_unsent(plan, due, schedule)
                return
            if self.pool.full():
                self.harness.recorder.window(self.window(plan, due)).blocked += 1
            # In flight from now on, not from when its greenlet first runs: a drain must
            # not miss a request that is spawned but not yet sent.
            self.harness.in_flight += 1
            self.pool.spawn(self._fire, user, plan, due)

    def _drop_unsent(self, plan: Plan, due: float, schedule: Any) -> None:
        """Count the arrivals that fell due before the plan changed but were never sent."""
        recorder = self.harness.recorder
        while due < self.replaced_at:
            recorder.window(self.window(plan, due)).dropped += 1
            due = next(schedule)

    def _fire(self, user: FastHttpUser, plan: Plan, due: float) -> None:
        # In turn, as the native engine sends them: a Zipf mix's order sets its hit ratio.
        body = self.bodies[self.next_body]
        self.next_body = (self.next_body + 1) % len(self.bodies)
        if self.target == SPLIT:
            path = predict_path(self.protocol, None)
            headers = {"x-user-id": f"user-{random.randrange(USER_POPULATION)}"}
        else:
            path, headers = predict_path(self.protocol, self.target), {}
        recorder = self.harness.recorder
        sent = time.perf_counter()
        sending = recorder.window(self.window(plan, sent))
        sending.sent += 1
        sending.late += sent - due > LATE_TOLERANCE_S
        try:
            answer = post_checked(user.client, path, body, headers, self.rows_per_request)
        finally:
            self.harness.in_flight -= 1
        recorder.window(self.window(plan, answer.done)).completed += 1
        recorder.answer(
            self.window(plan, due),
            answer.variant or self.target,
            answer.verdict.outcome,
            status_label(answer.status),
            answer.done - due,
            answer.done - sent,
            answer.server_s,
        )


GENERATOR: dict[str, Generator] = {}


class OpenLoopUser(FastHttpUser):
    """One per generator process; its task is the dispatcher."""

    concurrency = MAX_IN_FLIGHT
    network_timeout = 30.0
    connection_timeout = 5.0
    wait_time = constant(0)

    @task
    def dispatch(self) -> None:
        GENERATOR["this"].dispatch(self)


def install(environment: Environment, harness: Harness) -> None:
    """Make this process a generator: hold the bodies and follow plans."""
    generator = GENERATOR["this"] = Generator(harness, OpenLoopUser.concurrency)
    runner = environment.runner
    assert runner is not None
    runner.register_message(SETUP, lambda msg, **_: generator.setup(msg.data))
    runner.register_message(PLAN, lambda msg, **_: generator.set_plan(msg.data))


def plan_message(plan: Plan) -> dict[str, Any]:
    return asdict(plan)


def _init_worker(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if runner is not None and not isinstance(runner, MasterRunner):
        install(environment, Harness(environment, None))


events.init.add_listener(_init_worker)

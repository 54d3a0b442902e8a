"""Locust scenarios against perfserve.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless \\
        -u 20 -r 20 -t 30s --user-rps 5 --max-p99-ms 50                      # a CI gate

`--protocol v1|v2` and `--url` point the same users at another inference server
(KServe V1 or the Open Inference Protocol; `--variant` then names its model).

Users: `SingleRowUser` (one row per request), `BatchUser` (`--batch-rows` rows) and
`CanaryUser` (through the live split, with sticky `X-User-Id`s drawn from a population
of `--canary-users`); name classes on the command line to run only some. `--bodies
zipf:H` makes every user repeat popular rows as real users do, a share H of its
requests (for a server's row cache, `--cache-rows`). Every user is
paced at `--user-rps` (Poisson or constant gaps), and a `--bad-share` of its requests
are malformed on purpose: those must come back 4xx. Latency is recorded from each
request's scheduled time in an HdrHistogram; the quitting listener gates the exit code
on `--max-fail-ratio`, `--max-p95-ms` and `--max-p99-ms`. `PERFSERVE_SHAPE` picks a load
shape (loadtests/scenarios/shapes.py). `--shift "worst area=3"` sends every user's rows
with that feature scaled, shifted traffic that the service's drift metrics and the alert
`PerfserveInputDrift` react to (loadtests/shift.py). Options also read `PERFSERVE_<OPTION>`.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from locust import FastHttpUser, events, task
from locust.env import Environment

from loadtests.bodies import SALT_BASE, BodyMix, bad_bodies, body_source
from loadtests.checks import post_checked
from loadtests.scenarios import events as scenario_events
from loadtests.scenarios.pacing import Pacer
from loadtests.scenarios.shapes import shape_from_env
from perfserve_common.protocols import ProtocolName, predict_path

try:
    Shape = shape_from_env()
except ValueError as error:  # a bad PERFSERVE_SHAPE*: one line and exit 2, not a traceback
    print(f"locust -f {__file__}: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None


class PerfserveUser(FastHttpUser):
    """A paced user that sends prediction requests and checks every answer."""

    abstract = True
    rows_per_request = 1

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.pacer = Pacer(options.user_rps, options.arrivals)
        self.protocol: ProtocolName = options.protocol
        # A salt of its own: with --bodies zipf:H, users share only the popular rows.
        salt = random.randrange(1, SALT_BASE**2)
        # A worker receives the master's options as plain lists: the mix is rebuilt from them.
        mix = BodyMix(*options.bodies)
        self.next_body = body_source(
            mix, scenario_events.rows(), self.rows_per_request, self.protocol, salt
        )
        self.bad = list(bad_bodies(scenario_events.rows().shape[1]).values())
        self.bad_share: float = options.bad_share
        self.requested = options.variant or "split"
        self.path = predict_path(self.protocol, options.variant or None)

    def wait_time(self) -> float:
        return self.pacer.wait()

    def predict(self, path: str, headers: dict[str, str] | None = None) -> None:
        """One request (malformed with probability `bad_share`), checked and recorded.

        URLs are grouped by kind (`name=`), so per-variant paths share one stats line."""
        intended_bad = random.random() < self.bad_share
        body = random.choice(self.bad) if intended_bad else self.next_body()
        named = self.requested != "split" and path == self.path
        name = predict_path(self.protocol, "[variant]") if named else path
        name = f"{name} [bad input]" if intended_bad else name
        due = self.pacer.due
        sent = time.perf_counter()
        answer = post_checked(
            self.client, path, body, headers or {}, self.rows_per_request, intended_bad, name
        )
        variant = answer.variant or self.requested
        scenario_events.record(
            variant, answer.verdict.outcome, answer.status, due, sent, answer.done
        )


class SingleRowUser(PerfserveUser):
    """One hold-out row per request: the latency-bound, per-request-overhead case."""

    weight = 3

    @task
    def single_row(self) -> None:
        self.predict(self.path)


class BatchUser(PerfserveUser):
    """Several rows per request: the throughput-bound case that exercises the model."""

    weight = 1

    def on_start(self) -> None:
        self.rows_per_request = self.environment.parsed_options.batch_rows
        super().on_start()

    @task
    def batch(self) -> None:
        self.predict(self.path)


class CanaryUser(PerfserveUser):
    """Traffic through the live split: each request comes from one of `--canary-users`
    end users, whose `X-User-Id` keeps them on one variant (A/B and canary rollouts)."""

    weight = 1

    @task
    def through_the_split(self) -> None:
        population = self.environment.parsed_options.canary_users
        user_id = f"user-{random.randrange(population)}"
        self.predict(predict_path(self.protocol, None), {"x-user-id": user_id})


def _options(parser: Any, **_: Any) -> None:
    scenario_events.add_options(parser)


def _init(environment: Environment, **_: Any) -> None:
    scenario_events.start(environment)


def _stop(environment: Environment, **_: Any) -> None:
    scenario_events.hand_over()


def _gate(environment: Environment, **_: Any) -> None:
    scenario_events.gate(environment)


events.init_command_line_parser.add_listener(_options)
events.init.add_listener(_init)
events.test_stop.add_listener(_stop)
events.quitting.add_listener(_gate)


if __name__ == "__main__":
    # `locust -f loadtests/locustfile.py --help` cannot list this file's options: Locust
    # prints its help before it imports a locustfile (locust issue #2917). Run as
    # `python -m loadtests.locustfile`, the listener above is registered first, so Locust's
    # own help comes out with this file's options in it.
    from locust.argument_parser import get_parser

    get_parser().parse_args(["--help"])

"""`perfserve rollout`: start a canary on a running service and follow it to the end.

The controller runs inside the service (so it keeps going if this command is stopped);
this command starts it, prints every decision as it is made, and exits with the result:
0 promoted (or a dry run that passed), 1 rolled back or aborted (or a dry run that
failed), 3 paused for a person (`POST /rollout/resume`, `/abort` or `/promote` then).
The admin token is read from PERFSERVE_ADMIN_TOKEN or from --admin-token-file (as
`perfserve serve` reads it; PERFSERVE_ADMIN_TOKEN_FILE too, for a mounted secret), never
from the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from perfserve.cli.exit_codes import ExitCode
from perfserve_common.json_http import Answer, call
from perfserve_common.token_file import client_admin_token
from perfserve_common.usage import UsageError, add_option
from service.rollout.plan import DEFAULT_STEPS, RolloutPlan

POLL_S = 0.5
LOST_AFTER_S = 30.0
"""How long following a rollout tolerates the service not answering (a replica restarting
behind the load balancer) before the command gives up; the rollout itself goes on."""
EXIT_CODES = {
    "promoted": ExitCode.ANSWERED,
    "rolled_back": ExitCode.NO,
    "aborted": ExitCode.NO,
    "paused": ExitCode.INCONCLUSIVE,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_option(parser, "--url", default="http://127.0.0.1:8000", help="the service")
    add_option(
        parser,
        "--admin-token-file",
        type=Path,
        help="file holding the service's admin token (instead of PERFSERVE_ADMIN_TOKEN)",
    )
    add_option(parser, "--baseline", required=True, help="variant serving today")
    add_option(parser, "--candidate", required=True, help="variant to roll out")
    add_option(
        parser,
        "--steps",
        default=",".join(f"{step:g}" for step in DEFAULT_STEPS),
        help="candidate weights in percent, rising (default %(default)s)",
    )
    add_option(
        parser,
        "--window-seconds",
        type=float,
        default=60.0,
        help="longest a window waits for the samples every gate needs (default %(default)s)",
    )
    add_option(
        parser,
        "--max-extensions",
        type=int,
        default=2,
        help="windows an inconclusive step may add before pausing (default %(default)s)",
    )
    add_option(
        parser,
        "--on-fail",
        choices=("rollback", "pause"),
        default="rollback",
        help="on a failed gate: candidate weight 0 at once, or pause for a person",
    )
    add_option(
        parser, "--dry-run", action="store_true", help="judge and report, never change the split"
    )
    add_option(
        parser,
        "--policy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a judge threshold other than its default, e.g. slo_p99_s=0.1 (repeatable; "
        "docs/ROLLOUT.md lists them)",
    )
    parser.set_defaults(run=run)


def plan_from(args: argparse.Namespace) -> RolloutPlan:
    try:
        steps = [float(step) for step in args.steps.split(",") if step.strip()]
    except ValueError:
        raise UsageError(
            f"--steps: a comma-separated list of percentages, not {args.steps!r}"
        ) from None
    policy: dict[str, str] = {}
    for item in args.policy:
        name, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"--policy: NAME=VALUE, not {item!r}")
        policy[name.strip()] = value.strip()
    try:
        return RolloutPlan(
            baseline=args.baseline,
            candidate=args.candidate,
            steps=steps,
            window_seconds=args.window_seconds,
            max_extensions=args.max_extensions,
            on_fail=args.on_fail,
            dry_run=args.dry_run,
            policy=policy,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "plan"
        raise UsageError(f"{where}: {first['msg']}") from None


def run(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    token = client_admin_token(args.admin_token_file, "perfserve rollout")
    headers = {"Authorization": f"Bearer {token}"}
    url = args.url.rstrip("/")
    try:
        started = call("POST", f"{url}/rollout/start", plan.model_dump(mode="json"), headers)
    except (OSError, ValueError) as error:
        raise UsageError(f"--url {args.url}: cannot reach the service ({error})") from None
    if started.status != 202:
        print(f"perfserve rollout: {started.status} {started.text}", file=sys.stderr)
        return ExitCode.USAGE if started.status in (401, 403, 422) else ExitCode.NO
    return follow(url, headers)


def follow(url: str, headers: dict[str, str]) -> int:
    """Print each new decision until the rollout finishes or pauses; its exit code."""
    printed = 0
    while True:
        state = _status(url, headers)
        if state is None:
            return ExitCode.NO
        for decision in state["decisions"][printed:]:
            print(describe(decision), flush=True)
        printed = len(state["decisions"])
        status = state["status"]
        if status == "dry_run_done":
            failed = any(d["action"] == "fail" for d in state["decisions"])
            return ExitCode.NO if failed else ExitCode.ANSWERED
        if status in EXIT_CODES:
            return EXIT_CODES[status]
        time.sleep(POLL_S)


def _status(url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """The rollout's state; None, said on stderr, once the service has not answered it
    for LOST_AFTER_S."""
    deadline = time.monotonic() + LOST_AFTER_S
    while True:
        try:
            answer: Answer | None = call("GET", f"{url}/rollout/status", headers=headers)
        except OSError as error:
            answer, problem = None, f"cannot reach the service ({error})"
        if answer is not None and answer.status == 200:
            state: dict[str, Any] = answer.json()
            return state
        if answer is not None:
            problem = f"{answer.status} {answer.text}"
        if time.monotonic() > deadline:
            print(
                f"perfserve rollout: GET /rollout/status: {problem}; the rollout goes on in "
                "the service (GET /rollout/status, POST /rollout/abort)",
                file=sys.stderr,
            )
            return None
        time.sleep(POLL_S)


def describe(decision: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(decision["at"], UTC).strftime("%H:%M:%S")
    return (
        f"{at}  step {decision['step']}  candidate {decision['weight'] * 100:5.1f}%  "
        f"{decision['action']:<12} {decision['detail']}"
    )

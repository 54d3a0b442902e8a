"""`perfserve staging up` and `perfserve staging down`: the compose stack without Docker.

`up` starts on loopback what docker-compose.yml starts, from the same files: the
replicas sharing one split file (and so one rollout), nginx in front of them
(nginx/nginx.conf), Prometheus scraping them (prometheus/: config and rules), and
Grafana (grafana/: provisioning and dashboard) where its binary is installed. It prints
every address and the admin-token file (mode 0600) and returns; the processes run on,
recorded in the state folder, until `down` stops exactly those. Run it from a checkout
of the project. The replicas get this shell's PERFSERVE_* settings, as compose passes
them; `--inject` gives them faults (with --allow-faults) to rehearse a rollback:

    perfserve staging up --replicas 3 --inject onnx_int8:flip-rate=0.3
    perfserve rollout --url http://127.0.0.1:8000 --admin-token-file .staging/admin-token \\
        --baseline sklearn_fp32 --candidate onnx_int8 --steps 20,50,100
    perfserve staging down
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfserve.cli.exit_codes import ExitCode
from perfserve.staging.stack import (
    AlreadyUp,
    Options,
    StackFailed,
    describe,
    down,
    up,
)
from perfserve_common.usage import RawDescriptionHelpFormatter, add_option

PROG = "perfserve staging"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser(
        "up", help="start the stack detached", formatter_class=RawDescriptionHelpFormatter
    )
    add_option(start, "--replicas", type=int, default=3, help="perfserve serve processes")
    start.add_argument(  # PERFSERVE_INJECT in the shell reaches the replicas themselves
        "--inject",
        action="append",
        metavar="VARIANT:KIND=VALUE",
        help="a fault for every replica, as `perfserve serve --inject` (repeatable)",
    )
    add_option(start, "--store", type=Path, default=Path("model_store"), help="the model store")
    add_option(start, "--port", type=int, default=8000, help="the service through nginx (0: any)")
    add_option(start, "--prometheus-port", type=int, default=9090, help="Prometheus (0: any)")
    add_option(start, "--grafana-port", type=int, default=3000, help="Grafana (0: any)")
    stop = actions.add_parser(
        "down", help="stop what `up` started", formatter_class=RawDescriptionHelpFormatter
    )
    for action in (start, stop):
        add_option(
            action,
            "--state-dir",
            type=Path,
            default=Path(".staging"),
            help="where the stack's PIDs, token, split, configs and logs are kept",
        )
    start.set_defaults(run=run_up)
    stop.set_defaults(run=run_down)


def run_up(args: argparse.Namespace) -> int:
    options = Options(
        replicas=args.replicas,
        store=args.store,
        state_dir=args.state_dir,
        inject=args.inject or [],
        port=args.port,
        prometheus_port=args.prometheus_port,
        grafana_port=args.grafana_port,
    )
    try:
        stack = up(options)
    except AlreadyUp as already:
        print(f"{PROG}: already up (state in {already.stack.state_dir}); "
              f"`{PROG} down` stops it")  # fmt: skip
        print("\n".join(describe(already.stack)))
        return ExitCode.ANSWERED
    except StackFailed as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return ExitCode.ENVIRONMENT
    print(f"{PROG}: up, {len(stack.replicas)} replicas sharing one split")
    print("\n".join(describe(stack)))
    print(f"  stop it with      {PROG} down" + _state_dir_flag(args.state_dir))
    return ExitCode.ANSWERED


def run_down(args: argparse.Namespace) -> int:
    stack = down(args.state_dir)
    if stack is None:
        print(f"{PROG}: nothing to stop (no stack recorded in {args.state_dir})")
    else:
        print(f"{PROG}: stopped {len(stack.parts)} processes")
    return ExitCode.ANSWERED


def _state_dir_flag(state_dir: Path) -> str:
    return "" if state_dir == Path(".staging") else f" --state-dir {state_dir}"

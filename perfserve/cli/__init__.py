"""The `perfserve` command line: one console script, one subcommand per job.

It sits on top of service/, loadtests/ and perfserve/benchmarks/ and imports a command's module
only when that command runs, so `perfserve serve` loads the service and nothing of the
tools built on it, and a command whose extra is not installed says which one to add.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from perfserve.cli.exit_codes import ExitCode
from perfserve_common.machine import package_version
from perfserve_common.usage import HelpFormatter, MissingTool, UsageError, validation_message


@dataclass(frozen=True)
class Command:
    summary: str
    extra: str | None = None
    """The install extra the command needs beyond the serving install."""

    def module(self, name: str) -> str:
        """Every subcommand is one module of this package, named after it."""
        return f"{__name__}.{name.replace('-', '_')}"


COMMANDS: dict[str, Command] = {
    "build": Command(
        "build the model store: sklearn_fp32, onnx_fp32, onnx_int8 and a manifest", extra="build"
    ),
    "serve": Command("serve every variant of the store over HTTP"),
    "rollout": Command(
        "canary a candidate variant step by step on a running service; judged, rolled back"
    ),
    "staging": Command(
        "the compose stack on loopback without Docker: replicas, nginx, Prometheus, Grafana",
        extra="staging",
    ),
    "demo": Command(
        "build the store if needed, start the service, run a short sweep and report",
        extra="loadtest",
    ),
    "sweep": Command(
        "drive a running service at rising QPS with open-loop arrivals; find the knee",
        extra="loadtest",
    ),
    "bench-http": Command(
        "requests/s and latency over HTTP against the bare-ASGI floor (needs wrk)", extra="bench"
    ),
    "bench-cache": Command(
        "what the row cache gains at chosen hit ratios, with it and without (needs wrk)",
        extra="bench",
    ),
    "bench-overload": Command(
        "goodput at three times capacity under k6's open-loop arrivals; cost of a refusal",
        extra="bench",
    ),
    "bench-stall": Command(
        "freeze the server under load near its knee: how fast p99 returns under the SLO",
        extra="loadtest",
    ),
    "bench-generator": Command(
        "each sweep engine's ceiling against the bare-ASGI floor and what it adds at 1,000/s",
        extra="loadtest",
    ),
    "profile": Command(
        "where the server's CPU goes under open-loop load: per-stage table, flame graphs, diff",
        extra="profile",
    ),
    "bench": Command(
        "benchmark the store's variants: quality, speed, resources, operators", extra="bench"
    ),
    "robustness": Command(
        "quality of every variant under noisy, missing, shifted and out-of-range inputs",
        extra="bench",
    ),
    "decide": Command(
        "pick a variant: hard limits from a requirements file, then an objective", extra="bench"
    ),
    "capacity": Command(
        "replicas for a peak load: utilization, queueing delay, memory and storage", extra="bench"
    ),
    "compare": Command("promotion gate: candidate vs baseline; exit 1 on reject", extra="bench"),
    "history": Command(
        "list recorded bench/compare results, or accept one as the new baseline", extra="bench"
    ),
}


def version() -> str:
    return package_version() or "unknown (not installed)"


class Parser(argparse.ArgumentParser):
    """Usage mistakes end in one line that names what is wrong and where help is, exit 2:
    argparse's own would print the whole usage block above the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """Every command is listed; only the chosen one's module is imported for its options."""
    parser = Parser(
        prog="perfserve", description="HTTP inference service with load testing built in."
    )
    parser.add_argument("--version", action="version", version=f"perfserve {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.summary,
            description=command.summary[0].upper() + command.summary[1:] + ".",
            formatter_class=HelpFormatter,
        )
        if name == chosen:
            import_command(name, command).add_arguments(sub)  # type: ignore[attr-defined]
    return parser


def import_command(name: str, command: Command) -> object:
    try:
        return importlib.import_module(command.module(name))
    except ModuleNotFoundError as missing:
        print(extra_needed(name, missing), file=sys.stderr)
        raise SystemExit(ExitCode.ENVIRONMENT) from None


def extra_needed(name: str, missing: ModuleNotFoundError) -> str:
    """What to install for a command whose module (or a lazy import in it) is missing;
    re-raises when the missing module is the project's own or the command needs none."""
    command = COMMANDS[name]
    if command.extra is None or (missing.name or "").split(".")[0] in _OWN_PACKAGES:
        raise missing
    return (
        f"perfserve {name}: needs the '{command.extra}' extra ({missing.name} is not "
        f"installed): pip install 'perfserve[{command.extra}]'"
    )


_OWN_PACKAGES = {"service", "loadtests", "perfserve"}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in args_list if not arg.startswith("-")), None)
    try:
        parser = build_parser(chosen if chosen in COMMANDS else None)
    except UsageError as error:  # a bad PERFSERVE_<OPTION>, met while the options are set up
        print(f"perfserve {chosen}: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if not args_list:
        parser.print_help()
        return ExitCode.ANSWERED
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return ExitCode.ANSWERED
    from pydantic import ValidationError

    from service.store import StoreError

    try:
        return int(args.run(args) or 0)
    except ValidationError as error:
        print(f"perfserve {args.command}: error: {validation_message(error)}", file=sys.stderr)
        return ExitCode.USAGE
    except (UsageError, StoreError) as error:
        print(f"perfserve {args.command}: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except MissingTool as error:
        print(f"perfserve {args.command}: error: {error}", file=sys.stderr)
        return ExitCode.ENVIRONMENT
    except ModuleNotFoundError as missing:  # a command that imports its tools when it runs
        print(extra_needed(args.command, missing), file=sys.stderr)
        return ExitCode.ENVIRONMENT
    except KeyboardInterrupt:
        return 130

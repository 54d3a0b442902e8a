"""The service's own subcommands of `perfserve`: build the model store, and serve it.

Imported by the command line (perfserve/cli.py) only when one of them runs."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import types
import typing

from pydantic import ValidationError

from perfserve_common.token_file import open_permissions
from perfserve_common.usage import UsageError, env_name, flag_name, validation_message
from service.server import check_address, serve_counting_drain, serve_workers
from service.settings import Settings
from service.store import load_manifest


def add_arguments(serve: argparse.ArgumentParser) -> None:
    serve.description = (
        "Serve every variant of the model store over HTTP. Every option also reads "
        "PERFSERVE_<OPTION>; the command line wins."
    )
    for name, field in Settings.model_fields.items():
        if name == "admin_token":
            # Accepted only to refuse it with a reason: argv is readable by every local user.
            serve.add_argument("--admin-token", help=argparse.SUPPRESS)
            continue
        flag = "--" + name.replace("_", "-")
        default = "unset" if field.default is None else field.default
        help_text = f"{field.description} (default: {default}; env {env_name(name)})"
        if name == "inject":
            serve.add_argument(flag, action="append", metavar="VARIANT:KIND=VALUE", help=help_text)
        elif _is_bool(field.annotation):
            serve.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            serve.add_argument(flag, metavar=name.upper(), help=help_text)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from service.announce import announce_when_ready, stopped_line
    from service.connections import HeaderDeadlineProtocol

    if args.admin_token is not None:
        raise UsageError(
            "--admin-token would show the token to every local user (ps); "
            "set PERFSERVE_ADMIN_TOKEN or use --admin-token-file"
        )
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        settings = Settings(**given)
    except ValidationError as error:
        raise UsageError(
            validation_message(
                error, lambda name: flag_name(name) if name in given else env_name(name)
            )
        ) from None
    load_manifest(settings.store)  # a missing store fails here, with what to run
    check_address(settings.host, settings.port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if settings.admin_token_file is not None and (
        warning := open_permissions(settings.admin_token_file)
    ):
        logging.getLogger("perfserve").warning(warning)
    common = dict(
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, with a deadline on request headers and bounds on their size.
        http=functools.partial(
            HeaderDeadlineProtocol,
            max_head_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
        ),
        lifespan="on",
        access_log=settings.access_log,
        # Nothing here reads the client's address from proxy headers (a refused admin call
        # logs X-Forwarded-For itself), and the middleware costs every request a frame.
        proxy_headers=False,
        server_header=False,  # one header fewer per answer, and no version to advertise
        log_level=settings.log_level,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.keep_alive_s,
        # uvicorn's annotation says int, but it only ever waits with it: whole seconds
        # would turn 0.5 into 0, which uvicorn reads as "wait forever".
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    # uvicorn re-raises SIGTERM once its graceful shutdown is over; by then every admitted
    # request has been answered, so the process should exit 0, not die of the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    announce_when_ready(settings)
    if settings.workers == 1:
        from service.app import create_app

        drained = serve_counting_drain(create_app(settings), common)
        print(stopped_line(settings, drained), flush=True)
        return 0
    serve_workers(settings, given, common)
    print(stopped_line(settings, None), flush=True)
    return 0


def _is_bool(annotation: object) -> bool:
    if annotation is bool:
        return True
    return isinstance(annotation, types.UnionType) and bool in typing.get_args(annotation)

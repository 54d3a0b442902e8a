"""The service's own subcommands of `perfserve`: build the model store, and serve it.

Imported by the command line (perfserve/cli.py) only when one of them runs."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from common.usage import UsageError, add_option, env_name, flag_name, validation_message
from service.settings import Settings
from service.store import Manifest, load_manifest


def add_build_arguments(build: argparse.ArgumentParser) -> None:
    build.description = (
        "Train the reference model (or take yours), convert it to ONNX, quantize "
        "it to int8, score every variant on the hold-out set, and write the store."
    )
    add_option(build, "--store", type=Path, default=Path("model_store"), help="Folder to write.")
    add_option(
        build,
        "--model",
        type=Path,
        help="Your fitted scikit-learn pipeline, a joblib file (default: train the reference).",
    )
    add_option(build, "--data", type=Path, help="Your hold-out set: a CSV with a header row.")
    add_option(build, "--target", help="The target column of --data.")
    build.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    from service.build import build_from_files, build_store

    given = [args.model, args.data, args.target]
    if any(given) and not all(given):
        raise UsageError("--model, --data and --target go together")
    if args.model:
        manifest = build_from_files(args.store, args.model, args.data, args.target)
    else:
        manifest = build_store(args.store)
    print(describe_store(args.store, manifest))
    return 0


def describe_store(store: Path, manifest: Manifest) -> str:
    headline = "accuracy" if manifest.task == "classification" else "rmse"
    lines = [
        f"model store {store}: {manifest.model_name}, {manifest.n_features} features, "
        f"hold-out {manifest.holdout.rows} rows",
        f"{'variant':<14}{'format':<9}{'precision':<11}{'size':>10}{headline:>10}{'agree':>8}",
    ]
    for info in manifest.variants.values():
        lines.append(
            f"{info.name:<14}{info.format:<9}{info.precision:<11}"
            f"{info.file_size_bytes / 1024:>8.1f}kB{info.metrics[headline]:>10.4f}"
            f"{info.agreement_with_reference:>8.3f}"
        )
    if manifest.int8 is not None and manifest.int8.chosen is not None:
        lines.append(f"onnx_int8 is {manifest.int8.reason}")
    lines += [f"skipped {name}: {reason}" for name, reason in manifest.skipped.items()]
    return "\n".join(lines)


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
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
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
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
    common = dict(
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=HeaderDeadlineProtocol,  # httptools, with a deadline on request headers
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

        drained = _serve_counting_drain(create_app(settings), common)
        print(stopped_line(settings, drained), flush=True)
        return 0
    _serve_workers(settings, given, common)
    print(stopped_line(settings, None), flush=True)
    return 0


def check_address(host: str, port: int) -> None:
    """Bind the address once before starting: a port in use or a foreign interface is one
    line here, and the ready line can never come from another server on that port."""
    try:
        with socket.create_server((host, port), reuse_port=False) as _:
            pass
    except OSError as error:
        raise UsageError(
            f"--host {host} --port {port}: cannot listen there "
            f"({os.strerror(error.errno) if error.errno else error}); "
            "choose another port, or an interface of this machine"
        ) from None


def _serve_counting_drain(app: object, common: dict[str, object]) -> int:
    """Run one uvicorn server; return how many requests were in flight at the stop signal
    (uvicorn answers them all before it exits, up to the graceful shutdown time): those
    whose answer was not yet sent, not a request answered a moment ago whose task is
    still finishing."""
    import uvicorn

    class Server(uvicorn.Server):
        drained = 0

        def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
            if not self.should_exit:
                self.drained = sum(map(_answering, self.server_state.connections))
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, **common))  # type: ignore[arg-type]
    server.run()
    return server.drained


def _answering(connection: object) -> bool:
    """Whether a connection's current request is still waiting for its answer."""
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not cycle.response_complete


def _serve_workers(settings: Settings, given: dict[str, Any], common: dict[str, object]) -> None:
    """Several worker processes: settings travel as environment variables, metrics through
    a shared folder (prometheus_client multiprocess mode), the split through a file."""
    import uvicorn

    from service.metrics import Metrics, new_registry
    from service.state import Service

    # What every worker would refuse (variants, split, faults) is refused here, once, in
    # one line: uvicorn restarts a worker that fails to start, without end.
    Service(settings, Metrics(new_registry()))
    shared = Path(tempfile.mkdtemp(prefix="perfserve-"))
    (shared / "metrics").mkdir()
    os.environ.update({env_name(name): _env_value(value) for name, value in given.items()})
    if settings.split_file is None:
        os.environ[env_name("split_file")] = str(shared / "traffic.json")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared / "metrics")
    try:
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            workers=settings.workers,
            **common,  # type: ignore[arg-type]
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _env_value(value: object) -> str:
    """An option's value as its environment variable spells it (lists comma-joined)."""
    return ",".join(value) if isinstance(value, list) else str(value)


def _is_bool(annotation: object) -> bool:
    if annotation is bool:
        return True
    return isinstance(annotation, types.UnionType) and bool in typing.get_args(annotation)

"""Running the service: one uvicorn server, or several worker processes sharing metrics and the
split.

`perfserve serve` (perfserve/cli/serve.py) turns options into `Settings`, then calls `serve`."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import types
from pathlib import Path
from typing import Any

from perfserve_common.usage import UsageError, env_name
from service.settings import Settings


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


def serve_counting_drain(app: object, common: dict[str, object]) -> int:
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


def serve_workers(settings: Settings, given: dict[str, Any], common: dict[str, object]) -> None:
    """Several worker processes: settings travel as environment variables, metrics through
    a shared folder (prometheus_client multiprocess mode), the split through a file."""
    import uvicorn

    from service.metrics import Metrics, new_registry
    from service.state import Service

    # What every worker would refuse (variants, split, faults) is refused here, once, in
    # one line: uvicorn restarts a worker that fails to start, without end.
    Service(settings, Metrics(new_registry())).discard()
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

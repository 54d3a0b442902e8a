"""Start and stop real processes (`perfserve serve`, the bare floor, tools such as nginx
and Prometheus): for tests, the demo and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

# How `/readyz` (service/api.py) starts its detail once loading the store has failed; a
# test ties the two.
LOAD_FAILED = "loading failed"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, as an orchestrator would, and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            wait_or_kill(self.process, timeout_s)
        return self.process.returncode


def wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for a process told to stop; kill it if it has not within `timeout_s`."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_server(
    store: Path,
    *,
    port: int | None = None,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    checkout: Path | None = None,
    log_path: Path | None = None,
    detach: bool = False,
) -> ServerProcess:
    """Start a `perfserve serve` on loopback without waiting for it; the caller stops it.

    `checkout` serves the code of another copy of the project (an earlier commit, to
    compare against) with this environment's packages; `log_path` keeps its output there
    (default: a temporary file), `detach` as for `start_process`."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "perfserve",
        "serve",
        "--store",
        str(store),
        "--port",
        str(port),
    ]
    command += list(options)
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    if log_path is None:
        with tempfile.NamedTemporaryFile(prefix="perfserve-", suffix=".log", delete=False) as log:
            log_path = Path(log.name)
    environment = {**os.environ, **(env or {})}
    if checkout is not None:  # `python -m` puts the working folder first on the path
        environment["PYTHONPATH"] = str(checkout)
    process = start_process(command, log_path, env=environment, cwd=checkout, detach=detach)
    return ServerProcess(f"http://127.0.0.1:{port}", process, log_path)


def start_process(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    detach: bool = False,
) -> subprocess.Popen[bytes]:
    """`command` started with its output in `log_path` (truncated first).

    `detach` starts it in a session of its own, so that it outlives the command that
    started it and a terminal's Ctrl-C or hang-up does not reach it; its process group
    (the same number as its PID) is then the whole of it, children included, which is
    what `perfserve staging down` stops."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=detach,
        )


@contextmanager
def running_server(
    store: Path,
    *,
    port: int | None = None,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    ready_timeout_s: float = 60.0,
    checkout: Path | None = None,
) -> Iterator[ServerProcess]:
    """A `perfserve serve` on loopback, ready to answer; stopped on exit.

    `cpus` pins the server with taskset (e.g. "0"), so a load generator pinned elsewhere
    does not steal its core; `checkout` as for `start_server`.
    """
    server = start_server(store, port=port, options=options, env=env, cpus=cpus, checkout=checkout)
    try:
        wait_ready(server, ready_timeout_s)
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@contextmanager
def running_bare_server(cpus: str | None = None, ready_timeout_s: float = 10.0) -> Iterator[str]:
    """The HTTP-stack floor (perfserve_common/bare_asgi.py: uvicorn, uvloop, httptools, no
    framework, no model) on loopback; its URL. Any POST gets a fixed one-prediction answer."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "perfserve_common.bare_asgi:app",
        "--port",
        str(port),
    ]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command += ["--log-level", "warning"]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                httpx.post(f"{url}/predict", content=b"{}", timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare ASGI server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()


def wait_ready(server: ServerProcess, timeout_s: float) -> None:
    """Poll `/readyz` until it answers 200 (with several workers: all of them are ready);
    fail with the server's log if it dies, or at once if loading failed (it never retries)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            ready = httpx.get(f"{server.url}/readyz", timeout=1.0)
        except httpx.TransportError:
            ready = None
        if ready is not None and ready.status_code == 200:
            return
        if ready is not None and LOAD_FAILED in ready.text:
            raise RuntimeError(f"server cannot turn ready: {ready.text}\n{server.log()}")
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout_s} s:\n{server.log()}")


@contextmanager
def running_process(
    command: Sequence[str], ready_url: str, *, timeout_s: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running until the block ends, once `ready_url` answers 200.

    Fails with the process's output if it exits or never becomes ready.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_url(ready_url, process, timeout_s, lambda: _read(log))
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_url(
    url: str, process: subprocess.Popen[bytes], timeout_s: float, output: Callable[[], str]
) -> None:
    """Until `url` answers 200; fails with `output()` (the process's log) if `process`
    exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.args!r} not ready at {url} (exit {process.poll()}):\n{output()}")


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")

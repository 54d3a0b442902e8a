"""The server a profile reads: one started here, pinned to a core, or one running already.

Attaching needs the server's process on this machine (py-spy and /proc read it), found
from `--pid` or from the process listening on `--url`'s port, and it must be a
`perfserve serve`: profiling a process of some other program would attribute nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from perfserve.benchmarks.profile.spy import EnvironmentProblem
from perfserve_common.processes import running_server


@dataclass(frozen=True)
class Target:
    url: str
    pid: int
    cpus: list[int]
    """The CPUs the server may run on (its affinity)."""


def cpu_seconds(pid: int) -> float:
    """The server's CPU so far, user plus system, every thread (utime + stime in /proc)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """Each thread's CPU so far, by native thread id (what py-spy names threads by)."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@contextmanager
def started(store: Path, server_cpu: int) -> Iterator[Target]:
    """A `perfserve serve` of `store` pinned to `server_cpu`, ready; stopped on exit."""
    with running_server(store, cpus=str(server_cpu)) as server:
        yield Target(server.url, server.process.pid, [server_cpu])


def attached(url: str | None, pid: int | None) -> Target:
    """A running perfserve server, by its URL, its PID or both."""
    if pid is None:
        assert url is not None
        pid = _listener(url)
    process = _perfserve_process(pid)
    if url is None:
        url = f"http://127.0.0.1:{_listening_port(process)}"
    _check_answers(url, pid)
    return Target(url, pid, sorted(process.cpu_affinity() or []))


def _listener(url: str) -> int:
    parts = urlsplit(url)
    port = parts.port or 80
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise EnvironmentProblem(
            f"--url {url}: the server must run on this machine to be profiled; "
            "give --pid too if it listens on another address"
        )
    for connection in psutil.net_connections(kind="tcp"):
        listening = connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        if listening and connection.pid is not None:
            return int(connection.pid)
    raise EnvironmentProblem(f"no process on this machine listens on port {port} ({url})")


def _perfserve_process(pid: int) -> psutil.Process:
    try:
        process = psutil.Process(pid)
        command = process.cmdline()
    except psutil.NoSuchProcess:
        raise EnvironmentProblem(f"--pid {pid}: no such process") from None
    except psutil.AccessDenied:
        raise EnvironmentProblem(f"--pid {pid}: not allowed to read it (another user's?)") from None
    if "perfserve" not in " ".join(command) or "serve" not in command:
        shown = " ".join(command)[:80] or process.name()
        raise EnvironmentProblem(
            f"--pid {pid} is not a perfserve server ({shown}); give the PID of `perfserve serve`"
        )
    return process


def _listening_port(process: psutil.Process) -> int:
    for connection in process.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN:
            return int(connection.laddr.port)
    raise EnvironmentProblem(f"--pid {process.pid} listens on no TCP port; give --url")


def _check_answers(url: str, pid: int) -> None:
    try:
        ready = httpx.get(f"{url}/readyz", timeout=5.0)
    except httpx.HTTPError as error:
        raise EnvironmentProblem(f"{url} does not answer ({error})") from None
    if ready.status_code != 200:
        raise EnvironmentProblem(f"{url} (process {pid}) is not ready: {ready.text[:100]}")

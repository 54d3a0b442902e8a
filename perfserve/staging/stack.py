"""The compose stack on this machine's loopback, without Docker: `perfserve staging up`
and `perfserve staging down`.

The same parts as docker-compose.yml, from the same files: `--replicas` `perfserve serve`
processes sharing one split file (and so one rollout folder beside it, as compose's
replicas share the `split` volume), nginx in front from nginx/nginx.conf (addresses
rewritten by `perfserve.staging.nginx`), Prometheus with the project's config and rules
(targets rewritten by `perfserve.staging.prometheus`), and Grafana with the project's
provisioning and dashboard (rendered by `perfserve.staging.grafana`) when a Grafana
binary is installed. Each part runs detached in a session of its own; the state folder
records every process (PID and start time), so `down` stops exactly those and never a
process that merely reuses a PID.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from perfserve.staging import grafana, nginx, prometheus
from perfserve_common.processes import (
    ServerProcess,
    free_port,
    start_process,
    start_server,
    wait_for_url,
    wait_ready,
)
from perfserve_common.token_file import new_secret_file
from perfserve_common.usage import MissingTool, UsageError
from service.faults import parse_faults
from service.store import load_manifest

STATE_FILE = "state.json"
TOKEN_FILE = "admin-token"
SPLIT_FILE = Path("split") / "traffic.json"
"""Kept by `down`, as compose keeps its `split` volume: the next `up` starts on it."""
LOADGEN = "127.0.0.1:9465"
"""Where a Locust run or `perfserve sweep` on this machine serves its metrics."""
TOOLS = {
    "nginx": "the load balancer (Debian: apt-get install nginx-light)",
    "prometheus": "metrics and alert rules (Debian: apt-get install prometheus)",
}
REPLICA_READY_S = 180.0
"""Replicas load and warm every variant at once, on however few cores there are."""
TOOL_READY_S = 60.0
STOP_GRACE_S = 25.0
"""As compose's stop_grace_period: a replica drains admitted requests (10 s by default),
then its batchers get as long again; after this, what is left is killed."""


class StackFailed(Exception):
    """A part did not start; what was started is stopped again, its log kept."""


@dataclass(frozen=True)
class Options:
    replicas: int
    store: Path
    state_dir: Path
    inject: Sequence[str] = ()
    port: int = 8000
    prometheus_port: int = 9090
    grafana_port: int = 3000


@dataclass(frozen=True)
class Part:
    """One started process: what `down` stops (its whole process group)."""

    name: str
    pid: int
    started: float
    """When the process started (psutil's create_time): a PID can be reused."""
    url: str
    log: str


@dataclass
class Stack:
    state_dir: str
    token_file: str
    service: str = ""
    prometheus: str = ""
    grafana: str | None = None
    grafana_skipped: str | None = None
    parts: list[Part] = field(default_factory=list)

    @property
    def replicas(self) -> list[str]:
        return [part.url for part in self.parts if part.name.startswith("replica")]

    def running(self) -> list[Part]:
        return [part for part in self.parts if _ours(part)]

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


class AlreadyUp(Exception):
    def __init__(self, stack: Stack) -> None:
        super().__init__(f"already up (state in {stack.state_dir})")
        self.stack = stack


def read_state(state_dir: Path) -> Stack | None:
    """The stack `up` recorded in `state_dir`, if any."""
    path = state_dir / STATE_FILE
    try:
        recorded: dict[str, Any] = json.loads(path.read_text())
        parts = [Part(**part) for part in recorded.pop("parts")]
        return Stack(**recorded, parts=parts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise UsageError(
            f"--state-dir {state_dir}: {path} is not a stack's state ({error}); stop what it "
            "started by hand, then remove it"
        ) from None


def up(options: Options) -> Stack:
    """Start the stack and return it, every part ready; raises AlreadyUp when a stack
    recorded in the state folder still runs, MissingTool, UsageError or StackFailed."""
    state_dir = options.state_dir.resolve()
    previous = read_state(state_dir)
    if previous is not None and previous.running():
        raise AlreadyUp(previous)
    _check_options(options)
    missing = [f"{tool}: {why}" for tool, why in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise MissingTool(f"not installed: {'; '.join(missing)}")
    port = _port("--port", options.port)
    prometheus_port = _port("--prometheus-port", options.prometheus_port)
    binary = next((found for name in grafana.BINARIES if (found := shutil.which(name))), None)
    grafana_port = _port("--grafana-port", options.grafana_port) if binary else 0
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(str(state_dir), str(new_secret_file(state_dir / TOKEN_FILE)))
    stack.save()
    try:
        _start_replicas(stack, options)
        _start_nginx(stack, port)
        _start_prometheus(stack, prometheus_port)
        if binary is None:
            stack.grafana_skipped = (
                f"no {' or '.join(grafana.BINARIES)} binary on PATH (Debian does not "
                "package it; grafana.com/grafana/download)"
            )
            stack.save()
        else:
            _start_grafana(stack, Path(binary), grafana_port)
    except BaseException:
        _stop(stack.parts)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return stack


def down(state_dir: Path) -> Stack | None:
    """Stop every process `up` recorded in `state_dir` (the load balancer and the tools
    first, then the replicas, which drain); the stack, or None when none was recorded."""
    stack = read_state(state_dir.resolve())
    if stack is None:
        return None
    _stop(stack.parts)
    (Path(stack.state_dir) / STATE_FILE).unlink(missing_ok=True)
    return stack


def describe(stack: Stack) -> list[str]:
    """Every address of the stack and where its token and logs are, one per line."""
    lines = [f"  service (nginx)   {stack.service}"]
    lines += [f"  replica {i}         {url}" for i, url in enumerate(stack.replicas, 1)]
    lines.append(f"  Prometheus        {stack.prometheus}")
    lines.append(f"  Grafana           {stack.grafana or 'skipped: ' + str(stack.grafana_skipped)}")
    lines.append(f"  admin token file  {stack.token_file}")
    lines.append(f"  logs              {Path(stack.state_dir) / 'logs'}")
    return lines


def _check_options(options: Options) -> None:
    if options.replicas < 1:
        raise UsageError(f"--replicas {options.replicas}: at least 1")
    manifest = load_manifest(options.store)  # a missing store: one line naming what to run
    try:
        faulty = parse_faults(list(options.inject))
    except ValueError as error:
        raise UsageError(f"--inject {' '.join(options.inject)}: {error}") from None
    unknown = sorted(set(faulty) - set(manifest.variants))
    if unknown:
        raise UsageError(f"--inject {unknown}: not in the store; it has {list(manifest.variants)}")
    read = {"nginx/nginx.conf": nginx.CONFIG, "docker-compose.yml": grafana.COMPOSE}
    for name, path in read.items():
        if not path.is_file():
            raise UsageError(f"{name} not found at {path}: run from a checkout of the project")


def _port(option: str, port: int) -> int:
    """`port`, or a free one for 0; a port in use is a mistake in `option`."""
    if port == 0:
        return free_port()
    try:
        with socket.create_server(("127.0.0.1", port)):
            pass
    except OSError as error:
        raise UsageError(
            f"{option} {port}: cannot listen on 127.0.0.1:{port} ({error.strerror}); "
            "choose another port, or 0 for any free one"
        ) from None
    return port


def _replica_env(stack: Stack) -> dict[str, str]:
    """The caller's environment, as compose passes PERFSERVE_* from the shell, with the
    stack's token file instead of any token of the caller's (a server refuses both)."""
    env = {key: value for key, value in os.environ.items() if key != "PERFSERVE_ADMIN_TOKEN"}
    env["PERFSERVE_ADMIN_TOKEN_FILE"] = stack.token_file
    return env


def _start_replicas(stack: Stack, options: Options) -> None:
    """Every replica started at once (they load in parallel), then each waited for."""
    split_file = Path(stack.state_dir) / SPLIT_FILE
    split_file.parent.mkdir(exist_ok=True)
    serve_options = ["--split-file", str(split_file)]
    if options.inject:
        serve_options += ["--allow-faults", *(f"--inject={spec}" for spec in options.inject)]
    servers = []
    for index in range(1, options.replicas + 1):
        log = Path(stack.state_dir) / "logs" / f"replica-{index}.log"
        server = start_server(
            options.store.resolve(),
            options=serve_options,
            env=_replica_env(stack),
            log_path=log,
            detach=True,
        )
        servers.append(server)
        _record(stack, f"replica-{index}", server.process.pid, server.url, log)
    for server in servers:
        _ready(functools.partial(wait_ready, server, REPLICA_READY_S), server)


def _start_nginx(stack: Stack, port: int) -> None:
    workdir = Path(stack.state_dir) / "nginx"
    workdir.mkdir(exist_ok=True)
    listen = f"127.0.0.1:{port}"
    upstreams = [url.removeprefix("http://") for url in stack.replicas]
    command = nginx.nginx_command(nginx.local_config(upstreams, listen, workdir), workdir)
    stack.service = f"http://{listen}"
    _start_tool(stack, "nginx", command, stack.service, nginx.READY_PATH)


def _start_prometheus(stack: Stack, port: int) -> None:
    listen = f"127.0.0.1:{port}"
    targets = {"perfserve": [url.removeprefix("http://") for url in stack.replicas]}
    targets["loadgen"] = [LOADGEN]
    command = prometheus.local_prometheus(targets, Path(stack.state_dir) / "prometheus", listen)
    stack.prometheus = f"http://{listen}"
    _start_tool(stack, "prometheus", command, stack.prometheus, prometheus.READY_PATH)


def _start_grafana(stack: Stack, binary: Path, port: int) -> None:
    """Grafana with the project's provisioning and dashboard, configured as compose
    configures it."""
    workdir = Path(stack.state_dir) / "grafana"
    try:
        command = grafana.grafana_command(binary)
    except ValueError as error:
        raise StackFailed(str(error)) from None
    env = {**os.environ, **grafana.grafana_env(workdir, stack.prometheus, port)}
    stack.grafana = f"http://127.0.0.1:{port}"
    _start_tool(stack, "grafana", command, stack.grafana, grafana.READY_PATH, env)


def _start_tool(
    stack: Stack,
    name: str,
    command: list[str],
    url: str,
    ready_path: str,
    env: Mapping[str, str] | None = None,
) -> None:
    log = Path(stack.state_dir) / "logs" / f"{name}.log"
    process = start_process(command, log, env=env, detach=True)
    _record(stack, name, process.pid, url, log)
    server = ServerProcess(url, process, log)
    _ready(lambda: wait_for_url(url + ready_path, process, TOOL_READY_S, server.log), server)


def _record(stack: Stack, name: str, pid: int, url: str, log: Path) -> None:
    """Saved before waiting for it: a `down` after an interrupted `up` still stops it."""
    stack.parts.append(Part(name, pid, _start_time(pid) or 0.0, url, str(log)))
    stack.save()


def _ready(wait: Callable[[], None], server: ServerProcess) -> None:
    """`wait()`, or StackFailed naming the part, its log and the log's last line."""
    try:
        wait()
    except RuntimeError:
        last = (server.log().strip().splitlines() or ["(empty)"])[-1]
        raise StackFailed(
            f"{server.url} did not turn ready (log {server.log_path}: {last.strip()})"
        ) from None


def _stop(parts: Sequence[Part]) -> None:
    """SIGTERM to the tools' process groups, then to the replicas' (which drain), each
    batch waited for up to STOP_GRACE_S before what is left is killed."""
    tools = [part for part in parts if not part.name.startswith("replica")]
    replicas = [part for part in parts if part.name.startswith("replica")]
    for batch in (tools, replicas):
        groups = [part.pid for part in batch if _ours(part)]
        _signal(groups, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while _alive_groups(groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal(_alive_groups(groups), signal.SIGKILL)


def _signal(groups: Iterable[int], signum: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signum)


def _start_time(pid: int) -> float | None:
    """When process `pid` started, or None once it is gone (a zombie is gone)."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.create_time()
    except psutil.Error:
        return None


def _ours(part: Part) -> bool:
    """Whether `part`'s process group still runs: its leader with the recorded start time,
    or members left after the leader died (Linux reuses no PID that names a live group)."""
    started = _start_time(part.pid)
    if started is not None:
        return started == part.started
    return bool(_alive_groups([part.pid]))


def _alive_groups(groups: Sequence[int]) -> list[int]:
    """Those of `groups` that some live (not zombie) process belongs to."""
    wanted, alive = set(groups), set()
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(process.pid)
            if group in wanted and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.add(group)
    return sorted(alive)

"""The conditions a sweep ran under, for the first lines of its report.

A knee is a property of the whole setup, not of the model alone: the same replica holds
different rates on another CPU, another code revision, another model version, or with
the generator sharing its cores. The report states them beside the answer so that two
knees are compared only when they were measured alike.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psutil

from perfserve_common.machine import code_revision, cpu_model

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run_conditions(
    url: str, model_versions: dict[str, str], generator_cpus: list[int] | None = None
) -> dict[str, Any]:
    """Date, machine, code and model versions, and where server and generator ran.

    `model_versions` are the ones the target reported when the run was planned
    (loadtests/targets.py). `generator_cpus` are the CPUs the generators were pinned to,
    if they were; else the generator's placement is this process's own CPU affinity."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "code_revision": code_revision(),
        "model_versions": dict(model_versions),
        "server_cpus": _server_cpus(url),
        "generator_cpus": generator_cpus or sorted(os.sched_getaffinity(0)),
    }


def placement(cpus: list[int] | None, logical_cpus: int) -> str:
    """`CPUs 0-1 (pinned)`, `any of 2 CPUs (not pinned)` or `unknown (remote server)`."""
    if cpus is None:
        return "unknown (not on this machine)"
    if len(cpus) >= logical_cpus:
        return f"any of {logical_cpus} CPUs (not pinned)"
    return f"CPU{'s' if len(cpus) > 1 else ''} {','.join(map(str, cpus))} (pinned)"


def _server_cpus(url: str) -> list[int] | None:
    """The CPU affinity of the processes listening on the URL's port, when the server runs
    on this machine (and this user may see it); None otherwise."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cpus: set[int] = set()
    try:
        listening = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in listening:
        if connection.status != psutil.CONN_LISTEN or connection.laddr.port != port:
            continue
        if connection.pid is None:
            continue
        try:
            process = psutil.Process(connection.pid)
            cpus.update(process.cpu_affinity() or [])
            for child in process.children(recursive=True):
                cpus.update(child.cpu_affinity() or [])
        except psutil.Error:
            continue
    return sorted(cpus) or None

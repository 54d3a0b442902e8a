"""Whether a Dask scheduler's address answers at all, checked before anything heavy is
imported or read: a refused or silent address is one line within seconds (exit 4), where
Dask's own client retries until its timeout and then takes as long again to close."""

from __future__ import annotations

import socket

from perfserve_common.usage import MissingTool, UsageError

CONNECT_TIMEOUT_S = 3


def check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--dask-scheduler {address!r}: expected tcp://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise MissingTool(
            f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT_S} s "
            f"({error.strerror or type(error).__name__})"
        ) from None

"""The two lines `perfserve serve` prints: one when the service is ready, one when it stops.

The start-up line comes from the service's own endpoints, read over loopback once
`/readyz` answers (ready means every variant of every worker is loaded and warmed), so it
says the same for one worker or several, and tells what a client will really find: the
variants, their share of the traffic, the shadow, and whether `PUT /traffic` is open.
Two requests in all once ready, so the announcement costs the server nothing to speak of.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from service.settings import Settings

POLL_S = 0.2


def announce_when_ready(settings: Settings) -> threading.Thread:
    """Print the start-up line from a background thread once the service answers ready."""
    thread = threading.Thread(target=_announce, args=(settings,), name="announce", daemon=True)
    thread.start()
    return thread


def _announce(settings: Settings) -> None:
    url = local_url(settings)
    while True:
        time.sleep(POLL_S)
        try:
            status, readiness = _get_json(f"{url}/readyz")
            if status == 200:
                traffic = _get_json(f"{url}/traffic")[1]
                print(ready_line(settings, readiness["variants"], traffic), flush=True)
                return
            detail = str(readiness.get("detail", ""))
            if detail.startswith("loading failed"):
                print(f"perfserve serve: {url} is up but not ready: {detail}", flush=True)
                return
        except (OSError, ValueError):
            continue  # not listening yet


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a GET, 503s included (the standard library keeps the
    serving install free of an HTTP client package)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def local_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def ready_line(settings: Settings, variants: list[str], traffic: dict[str, Any]) -> str:
    weights: dict[str, float] = traffic["weights"]
    states = []
    for name in variants:
        share = f", {weights[name]:.0%} of traffic" if weights.get(name) else ""
        shadow = ", shadow" if traffic.get("shadow") == name else ""
        states.append(f"{name} (loaded{share}{shadow})")
    workers = f"{settings.workers} worker" + ("s" if settings.workers > 1 else "")
    admin = "enabled" if settings.admin_token is not None else "disabled (no admin token)"
    return (
        f"perfserve serve: ready on http://{settings.host}:{settings.port}, {workers}; "
        f"variants {', '.join(states)}; admin API (PUT /traffic) {admin}"
    )


def stopped_line(settings: Settings, drained: int | None) -> str:
    if drained is None:
        return (
            f"perfserve serve: stopped {settings.workers} workers, each after draining the "
            "requests it had in flight"
        )
    plural = "" if drained == 1 else "s"
    return f"perfserve serve: stopped after draining {drained} request{plural} in flight"

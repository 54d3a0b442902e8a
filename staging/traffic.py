"""Apply one traffic split to every replica of the service at once.

Each replica keeps its split in its own memory, so a `PUT /traffic` sent through the
load balancer changes one replica only: with three replicas a 10% canary would get
about 3% of the traffic, and the other replicas' weights would say something else.
This sends the split to every address the service's name resolves to (inside compose,
one per replica), then reads each one back.

    docker compose exec service python -m staging.traffic \\
        '{"weights": {"sklearn_fp32": 0.9, "onnx_int8": 0.1}, "shadow": "onnx_fp32"}'
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from service.routing import TrafficSplit

TOKEN_VARIABLE = "PERFSERVE_ADMIN_TOKEN"


def replica_urls(url: str) -> list[str]:
    """One base URL per IPv4 address of `url`'s host (compose networks are IPv4)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = socket.getaddrinfo(parts.hostname, port, socket.AF_INET, socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in found})
    return [f"{parts.scheme}://{address}:{port}" for address in addresses]


def apply_split(urls: Sequence[str], split: TrafficSplit, token: str) -> dict[str, Any]:
    """PUT `split` to every replica and return what each one now serves.

    Every replica is tried even if one fails, so a failure leaves as few replicas as
    possible behind; the error then names the ones that did not take the split.
    """
    applied: dict[str, Any] = {}
    failed: list[str] = []
    body = split.model_dump_json().encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for url in urls:
        try:
            _call(urllib.request.Request(f"{url}/traffic", body, headers, method="PUT"))
            applied[url] = _call(urllib.request.Request(f"{url}/traffic"))
        except OSError as error:
            failed.append(f"{url}: {_reason(error)}")
    if failed:
        raise RuntimeError("the split did not reach every replica:\n  " + "\n  ".join(failed))
    return applied


def current_splits(urls: Sequence[str]) -> dict[str, Any]:
    """What each replica serves now."""
    return {url: _call(urllib.request.Request(f"{url}/traffic")) for url in urls}


def _call(request: urllib.request.Request) -> Any:
    """The JSON answer; the standard library only, as the serving image has no HTTP client."""
    with urllib.request.urlopen(request, timeout=5.0) as response:
        return json.loads(response.read())


def _reason(error: OSError) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"{error.code} {error.read().decode(errors='replace')}"
    return f"{type(error).__name__}: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m staging.traffic",
        description="Show the traffic split of every replica, or set a new one on all of "
        f"them (the admin token is read from ${TOKEN_VARIABLE}).",
    )
    parser.add_argument(
        "split",
        nargs="?",
        help='the PUT /traffic body, e.g. \'{"weights": {"sklearn_fp32": 0.9, '
        '"onnx_int8": 0.1}, "shadow": null}\'; without it, print the current splits',
    )
    parser.add_argument(
        "--url", default="http://service:8000", help="the service; its name gives the replicas"
    )
    args = parser.parse_args(argv)
    try:
        urls = replica_urls(args.url)
        if args.split is None:
            result = current_splits(urls)
        else:
            token = os.environ.get(TOKEN_VARIABLE)
            if not token:
                raise RuntimeError(f"set {TOKEN_VARIABLE} to the service's admin token")
            result = apply_split(urls, TrafficSplit.model_validate_json(args.split), token)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"staging.traffic: {error}", file=sys.stderr)
        return 1
    for url, split in result.items():
        print(f"{url}  weights={split['weights']}  shadow={split['shadow']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

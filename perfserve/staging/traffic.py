"""Change the traffic split of the staging stack and wait until every replica follows it.

Every replica follows one split file on a shared volume (PERFSERVE_SPLIT_FILE), so one
`PUT /traffic` through the load balancer changes them all within a poll (0.2 s). This
sends that one PUT, then reads the split's version back from every address the
service's name resolves to (inside compose, one per replica) until all of them report
the new version, the check a rollout makes before it trusts a step's numbers.

    docker compose exec service python -m perfserve.staging.traffic \\
        '{"weights": {"sklearn_fp32": 0.9, "onnx_int8": 0.1}, "shadow": "onnx_fp32"}'
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from perfserve_common.json_http import call
from perfserve_common.token_file import client_admin_token
from perfserve_common.usage import UsageError
from service.routing import TrafficSplit


def replica_urls(url: str) -> list[str]:
    """One base URL per IPv4 address of `url`'s host (compose networks are IPv4)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = socket.getaddrinfo(parts.hostname, port, socket.AF_INET, socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in found})
    return [f"{parts.scheme}://{address}:{port}" for address in addresses]


def apply_split(
    url: str, split: TrafficSplit, token: str, replicas: Sequence[str], timeout_s: float = 5.0
) -> dict[str, Any]:
    """PUT `split` once to `url` (the load balancer or any replica), then wait until every
    replica reports the version it was given; what each replica serves."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = call("PUT", f"{url}/traffic", split.model_dump(mode="json"), headers, 5.0)
    if answer.status != 200:
        raise RuntimeError(f"{url} refused the split: {answer.status} {answer.text}")
    return wait_for_version(replicas, answer.json()["version"], timeout_s)


def wait_for_version(urls: Sequence[str], version: int, timeout_s: float) -> dict[str, Any]:
    """Poll every replica until each reports `version` or a later one; the error names
    the replicas that did not follow in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        splits = current_splits(urls)
        behind = [url for url, split in splits.items() if split.get("version", -1) < version]
        if not behind:
            return splits
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not on split version {version} after {timeout_s:g} s: "
                + ", ".join(f"{url} (version {splits[url].get('version')})" for url in behind)
                + "; is the split file on a volume every replica mounts?"
            )
        time.sleep(0.05)


def current_splits(urls: Sequence[str]) -> dict[str, Any]:
    """What each replica serves now (its error, for one that does not answer)."""
    splits: dict[str, Any] = {}
    for url in urls:
        try:
            answer = call("GET", f"{url}/traffic", timeout_s=5.0)
            splits[url] = answer.json() if answer.status == 200 else {"error": answer.text}
        except (OSError, ValueError) as error:
            splits[url] = {"error": f"{type(error).__name__}: {error}"}
    return splits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfserve.staging.traffic",
        description="Show the traffic split of every replica, or set a new one and wait "
        "until all follow it (the admin token is read from $PERFSERVE_ADMIN_TOKEN or the "
        "file $PERFSERVE_ADMIN_TOKEN_FILE names).",
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
            token_file = os.environ.get("PERFSERVE_ADMIN_TOKEN_FILE")
            token = client_admin_token(
                Path(token_file) if token_file else None, "perfserve.staging.traffic"
            )
            split = TrafficSplit.model_validate_json(args.split)
            result = apply_split(args.url, split, token, urls)
    except (OSError, RuntimeError, ValueError, UsageError) as error:
        print(f"perfserve.staging.traffic: {error}", file=sys.stderr)
        return 1
    for url, split in result.items():
        print(
            f"{url}  version={split.get('version')}  weights={split.get('weights')}  "
            f"shadow={split.get('shadow')}" + (f"  {split['error']}" if "error" in split else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Argument types shared by the Locust options and the `perfserve sweep` command line."""

from __future__ import annotations

import argparse
import os

from loadtests.bodies import BodyMix, parse_body_mix
from perfserve_common.protocols import ProtocolName, parse_protocol


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number, 1 or more, not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def rate_list(text: str) -> list[float]:
    """`100,200,400` as rising rates in requests per second."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"rates must look like 100,200,400, not {text!r}"
        ) from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive numbers, not {text!r}")
    return sorted(rates)


def cpu_list(text: str) -> list[int]:
    """`1` or `2,3`: CPUs this process may run on, to pin generator processes to."""
    allowed = sorted(os.sched_getaffinity(0))
    try:
        cpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"CPUs must look like 1 or 2,3, not {text!r}") from None
    if not cpus or any(cpu not in allowed for cpu in cpus):
        raise argparse.ArgumentTypeError(f"CPUs must be among {allowed}, not {text!r}")
    return cpus


def protocol(text: str) -> ProtocolName:
    """`perfserve`, `v1` or `v2`: how the target is asked for predictions."""
    try:
        return parse_protocol(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def body_mix(text: str) -> BodyMix:
    """`distinct` or `zipf:H`: how often bodies repeat a row (see loadtests/bodies.py)."""
    try:
        return parse_body_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None

"""What a load test's target serves: perfserve describes itself (`/models`, `/traffic`);
another inference server, spoken to in V1 or V2, is taken at its word: the models to
load are the ones named on the command line."""

from __future__ import annotations

import httpx

from loadtests import SPLIT
from perfserve_common.protocols import ProtocolName
from perfserve_common.usage import UsageError


def describe_target(
    url: str, protocol: ProtocolName, named: list[str]
) -> tuple[list[str], dict[str, float]]:
    """The models (variants) the target serves and its live split (empty when it has
    none); a UsageError saying what to give when neither can be known."""
    try:
        models = httpx.get(f"{url}/models", timeout=10).raise_for_status().json()
        traffic = httpx.get(f"{url}/traffic", timeout=10).raise_for_status().json()
        return [v["name"] for v in models["variants"]], dict(traffic["weights"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        if protocol == "perfserve":
            raise UsageError(f"cannot read {url}/models: {error}") from None
    if not named or SPLIT in named:
        raise UsageError(
            f"--variants: {url} is not perfserve (no /models), so name the models it serves; "
            f"'{SPLIT}' is perfserve's traffic split"
        )
    return named, {}

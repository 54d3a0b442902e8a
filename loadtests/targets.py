"""What a load test's target serves: perfserve describes itself (`/models`, `/traffic`);
another inference server, spoken to in V1 or V2, is taken at its word: the models to
load are the ones named on the command line.

This is the only place a sweep asks the target about itself before it measures: the
plan is made from the `TargetFacts` read here, without another request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtests import SPLIT
from perfserve_common.protocols import ProtocolName
from perfserve_common.usage import UsageError


@dataclass(frozen=True)
class TargetFacts:
    """What the target at `url` serves, read once before the run."""

    url: str
    models: list[str]
    """The models (variants) it serves, or the ones named when it cannot say."""
    split_weights: dict[str, float] = field(default_factory=dict)
    """Its live traffic split; empty when it has none."""
    model_versions: dict[str, str] = field(default_factory=dict)
    """Each model's version as it reports it; empty when it does not."""


def describe_target(url: str, protocol: ProtocolName, named: list[str]) -> TargetFacts:
    """What the target serves; a UsageError saying what to give when it cannot be known."""
    try:
        models = httpx.get(f"{url}/models", timeout=10).raise_for_status().json()
        traffic = httpx.get(f"{url}/traffic", timeout=10).raise_for_status().json()
        return _perfserve_facts(url, models, traffic)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        if protocol == "perfserve":
            raise UsageError(f"cannot read {url}/models: {error}") from None
    if not named or SPLIT in named:
        raise UsageError(
            f"--variants: {url} is not perfserve (no /models), so name the models it serves; "
            f"'{SPLIT}' is perfserve's traffic split"
        )
    return TargetFacts(url, named)


def _perfserve_facts(url: str, models: Any, traffic: Any) -> TargetFacts:
    """The facts in perfserve's `/models` and `/traffic` answers (a KeyError or a
    TypeError when they are not perfserve's)."""
    variants = models["variants"]
    return TargetFacts(
        url,
        [v["name"] for v in variants],
        dict(traffic["weights"]),
        {v["name"]: str(v.get("model_version", "?")) for v in variants},
    )

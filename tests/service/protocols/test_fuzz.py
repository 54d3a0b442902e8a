"""Schemathesis fuzzes the V2 and V1 routes of a real server from its own OpenAPI
document: valid and invalid bodies, paths and headers; no answer may be a 5xx, and every
answer must match what the document promises (status, content type, body schema)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from perfserve_common.processes import ServerProcess

pytestmark = pytest.mark.integration

PROTOCOL_PATHS = r"^/($|v1/|v2)"
EXAMPLES = 40  # per operation and generation mode


def test_protocol_routes_keep_their_documented_promises(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document).include(path_regex=PROTOCOL_PATHS)
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    fuzzed = sorted(f"{operation.method.upper()} {operation.path}" for operation in operations)
    assert "POST /v2/models/{name}/infer" in fuzzed and "POST /v1/models/{name}:predict" in fuzzed
    assert len(fuzzed) == 10, fuzzed
    for operation in operations:
        for mode in _modes(operation):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case: Any) -> None:
                case.call_and_validate(base_url=server.url)

            fuzz()


def _modes(operation: Any) -> list[schemathesis.GenerationMode]:
    """Invalid bodies too, for the routes that take one (a path parameter is any string,
    so there is no invalid one to make)."""
    modes = [schemathesis.GenerationMode.POSITIVE]
    if operation.method.upper() == "POST":
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    return modes

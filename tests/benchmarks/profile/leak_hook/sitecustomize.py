"""A test build of the server that leaks: every answer's encoder call keeps a small dict
for good, two per request. On a server's PYTHONPATH (tests/benchmarks/profile/
test_profile_memory.py) Python imports it at start-up; the leak check must see it."""

from __future__ import annotations

from typing import Any

import service.payload

KEPT: list[dict[str, int]] = []
_original = service.payload.jsonable


def _leaky_jsonable(array: Any) -> Any:
    KEPT.append({"size": int(array.size)})
    return _original(array)


service.payload.jsonable = _leaky_jsonable

"""Which prediction paths belong to which protocol (the hot path asks for every request
that is not `/predict`)."""

from __future__ import annotations

from functools import lru_cache

from service.protocols import v1, v2
from service.protocols.codec import Codec

PREFIXES = ((v2.MODELS, v2.INFER, v2.CODEC), (v1.MODELS, v1.PREDICT, v1.CODEC))
ROUTES_REMEMBERED = 256
"""Paths whose answer is kept: the few a server is sent over and over, looked up in a
fifth of the time matching them takes; bounded, so paths made up by clients cannot grow
it."""


@lru_cache(maxsize=ROUTES_REMEMBERED)
def model_route(path: str) -> tuple[str, Codec] | None:
    """The model name and codec of a V2 infer or V1 predict path, or None."""
    for prefix, suffix, codec in PREFIXES:
        if path.startswith(prefix) and path.endswith(suffix):
            name = path[len(prefix) : -len(suffix)]
            return (name, codec) if name and "/" not in name else None
    return None

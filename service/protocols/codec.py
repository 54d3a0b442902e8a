"""What every protocol provides: the `Codec` interface, and the split's model name."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from service.batching import BatchResult

SPLIT_MODEL = "perfserve"
"""The model name that goes through the live traffic split; each variant is also a model
under its own name."""


Headers = list[tuple[bytes, bytes]]
SHOWN_NAME_CHARS = 64
"""How much of a client's unknown model or variant name an error repeats."""


def shown_name(name: str) -> str:
    """A client's name as an error repeats it: cut short, so a long one cannot bloat it."""
    return name[:SHOWN_NAME_CHARS] + ("..." if len(name) > SHOWN_NAME_CHARS else "")


def unknown_model_message(name: str, variants: list[str]) -> str:
    """The 404's message for a model name that is neither the split's nor a variant's."""
    return f"unknown model {shown_name(name)!r}; available: {[SPLIT_MODEL, *variants]}"


class Codec(Protocol):
    """One protocol's reading of a request body and writing of its answers."""

    media_types: frozenset[bytes]
    """Content types accepted besides JSON."""

    def parse(
        self, body: bytes, n_features: int, max_rows: int, headers: Headers
    ) -> tuple[np.ndarray, Any]:
        """The rows as a (rows, n_features) float matrix, and what the answer must echo of
        the request; raises `Reject` for a body the protocol does not allow. `headers` are
        the request's, for a protocol whose body they describe."""
        ...

    def encode(
        self, model: str, variant: str, version: str, result: BatchResult, request: Any
    ) -> bytes:
        """The 200 body: `model` is the name the client asked for, `variant` answered."""
        ...

    def error(self, message: str) -> bytes:
        """An error body in the protocol's own shape."""
        ...

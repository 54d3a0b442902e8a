"""What a request handler needs of the running service: the `Serving` interface.

The prediction path (service/predict.py) and the protocols' routes (service/protocols/)
see the service only through it: the variants loaded with their batchers, the choice of
a variant for a request, admission (which variants a client may name, the body limits,
the row screen, readiness), and the one owner of each request metric. What only the
app's lifespan, the admin routes and rollouts need (loading, the split file, the
rollout replica, drift, shutdown) stays on `Service` (service/state.py) and its parts,
which serve this interface as it is.

A Protocol and not a wrapper, so that nothing stands between a request and the service:
the handler binds what it calls once, at start-up, and pays no extra call per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.batching import BatchResult, MicroBatcher
from service.cache import RowCache
from service.forcing import ForcingPolicy
from service.guards import FeatureRangeGuard
from service.metrics import FoldedHistogram
from service.receiving import BodyBudget, BodyDeadlines
from service.settings import Settings
from service.store import Manifest, VariantInfo


@dataclass
class LoadedVariant:
    info: VariantInfo
    batcher: MicroBatcher
    memory_bytes: int
    cache: RowCache | None = None
    """Answers to repeated rows of this model (`cache_rows`); None when off."""
    durations: dict[int, FoldedHistogram] = field(default_factory=dict)
    """Its request-duration children by status, made on first use (see
    `Serving.observe_request`)."""

    def __post_init__(self) -> None:
        self.tag = (b"x-variant", self.info.name.encode())
        """The answer's `X-Variant` header, encoded once."""


class Serving(Protocol):
    """The request path's view of the service (see the module docstring)."""

    @property
    def settings(self) -> Settings:
        """The limits a request is held to (read once, at start-up)."""
        ...

    @property
    def manifest(self) -> Manifest:
        """The model's features, classes and variants, as the store describes them."""
        ...

    @property
    def names(self) -> list[str]:
        """Every variant served, loaded or not yet, in the order given."""
        ...

    @property
    def variants(self) -> dict[str, LoadedVariant]:
        """The variants loaded so far, with their batchers; one dict for the process's
        life, filled once loading ends (so a handler may keep a reference to it)."""
        ...

    @property
    def ready(self) -> bool:
        """Every variant loaded and warmed."""
        ...

    @property
    def load_error(self) -> str | None:
        """Why loading failed, if it did."""
        ...

    @property
    def forcing(self) -> ForcingPolicy:
        """Which variants a client may name instead of taking the split's choice."""
        ...

    @property
    def body_budget(self) -> BodyBudget:
        """The process's budget of prediction body bytes in flight."""
        ...

    @property
    def body_deadlines(self) -> BodyDeadlines:
        """Reads a body within its size limit and deadline."""
        ...

    @property
    def row_screen(self) -> FeatureRangeGuard:
        """Explains a batch's refusal of a request's rows (422 naming row and feature)."""
        ...

    def choose(self, user_id: bytes | None = None) -> str:
        """The variant the live split gives a request; stable for a given `user_id`."""
        ...

    def split_variants(self) -> list[str]:
        """The variants the live split names, whatever their weight."""
        ...

    def not_ready(self) -> str | None:
        """Why the service cannot take every request yet, or None once it can."""
        ...

    def publish_inflight(self, read: Callable[[], int]) -> None:
        """Have `perfserve_inflight_requests` read the handler's count at each flush."""
        ...

    def observe_request(self, variant: LoadedVariant, status: int, elapsed_s: float) -> None:
        """A prediction's duration, whatever its status."""
        ...

    def count_rejection(self, reason: str) -> None:
        """A refused request, by reason."""
        ...

    def record_evidence(
        self, variant: str, user_id: bytes | None, elapsed_s: float, status: int
    ) -> bool:
        """A routed request as the running rollout's evidence; whether it counted."""
        ...

    def mirror(
        self, served: str, rows: np.ndarray, result: BatchResult, evidence: bool = False
    ) -> None:
        """A sampled copy of a routed request's rows to the shadow variant, if one is set."""
        ...

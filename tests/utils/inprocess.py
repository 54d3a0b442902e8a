"""The service's ASGI app driven in this process, for the fast test lane.

The app is the one `perfserve serve` runs (the raw-ASGI prediction path in front of
FastAPI, real batchers and runners, its own fresh Prometheus registry); only uvicorn and
the socket are left out. Its lifespan runs, so models load and warm as in a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from service.app import create_app
from service.settings import Settings
from service.state import Service
from tests.utils import eventually_async

BASE_URL = "http://perfserve.test"


@dataclass(frozen=True)
class InProcess:
    """A ready app, a client talking to it, and the service behind it."""

    client: httpx.AsyncClient
    service: Service

    def sample(self, name: str, **labels: str) -> float:
        """A sample of the app's own registry (0 when the series does not exist yet)."""
        return self.service.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def started(store: Path, **settings: Any) -> AsyncIterator[InProcess]:
    """The app on `store` with `settings` (as `Settings` fields), its lifespan started:
    models load in the background, as in a server that has just bound its port."""
    app = create_app(Settings(store=store, **settings))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url=BASE_URL) as client,
    ):
        yield InProcess(client, app.service)


@asynccontextmanager
async def serving(
    store: Path, ready_timeout_s: float = 60.0, **settings: Any
) -> AsyncIterator[InProcess]:
    """The app on `store` with `settings`, ready to answer."""
    async with started(store, **settings) as app:
        await _wait_ready(app.client, app.service, ready_timeout_s)
        yield app


async def _wait_ready(client: httpx.AsyncClient, service: Service, timeout_s: float) -> None:
    """Poll `/readyz` as an orchestrator would; fail with the load error if loading failed."""

    async def ready() -> bool:
        if service.load_error is not None:
            raise RuntimeError(f"the store failed to load: {service.load_error}")
        return (await client.get("/readyz")).status_code == 200

    await eventually_async(ready, timeout_s, what="ready")

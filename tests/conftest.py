"""Shared fixtures: one model store per session, the app in process (fast lane) and real
servers on free loopback ports (integration lane).

Two lanes: tests marked `integration` start real processes (servers, Locust, Prometheus,
nginx, `perfserve` commands); the others run in this process and make the fast lane,
`pytest -m "not integration"` (`make test-fast`). A test file that starts processes says
so with `pytestmark = pytest.mark.integration`; a test using the `server` fixture is
marked here. In the fast lane, a test that starts a process anyway fails and says so.
"""

from __future__ import annotations

import multiprocessing.process
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfserve.modelstore.build import build_store
from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset, Manifest, load_holdout, load_manifest
from tests.utils import ADMIN, ADMIN_ENV, ADMIN_TOKEN
from tests.utils.inprocess import serving

# Fixtures that start processes (a server; a bench, which measures cold starts in fresh
# processes): every test using one, directly or through another fixture, is integration.
PROCESS_FIXTURES = {"server", "bench_result"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & PROCESS_FIXTURES or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _processes_refused(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _processes_refused(item):
        return (yield)


@contextmanager
def _processes_refused(item: pytest.Item) -> Iterator[None]:
    """With integration tests left out, a test not marked integration (or a fixture set up
    for it) that starts a process fails: it would slow the fast lane down unseen."""
    lane: str = item.config.getoption("markexpr") or ""
    if "not integration" not in lane or item.get_closest_marker("integration"):
        yield
        return

    def refuse(*args: Any, **options: Any) -> None:
        raise RuntimeError(f"{item.nodeid} starts a process: mark it integration")

    starts = [(subprocess.Popen, "__init__"), (multiprocessing.process.BaseProcess, "start")]
    originals = [getattr(owner, name) for owner, name in starts]
    for owner, name in starts:
        setattr(owner, name, refuse)
    try:
        yield
    finally:
        for (owner, name), original in zip(starts, originals, strict=True):
            setattr(owner, name, original)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "model_store"
    build_store(path)
    return path


@pytest.fixture(scope="session")
def manifest(store: Path) -> Manifest:
    return load_manifest(store)


@pytest.fixture(scope="session")
def holdout(store: Path) -> Dataset:
    return load_holdout(store)


@pytest.fixture(scope="session")
def shared_server(store: Path) -> Iterator[ServerProcess]:
    """One server process for the whole session (each start costs seconds, more on a
    loaded machine); tests reach it through `server`."""
    with running_server(store, options=["--routing-seed", "7"], env=ADMIN_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """A server with every variant, an admin token and a fixed routing seed, its traffic
    split back to the start-up one for each module (tests read metrics as deltas)."""
    start_up = {"weights": {"sklearn_fp32": 1.0}, "shadow": None}
    httpx.put(f"{shared_server.url}/traffic", json=start_up, headers=ADMIN).raise_for_status()
    return shared_server


@pytest.fixture(params=["app", pytest.param("server", marks=pytest.mark.integration)])
async def client(request: pytest.FixtureRequest, store: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the service configured as `server` is: the ASGI app in this process (a
    fresh one, with a fresh registry, per test), then the real server over loopback."""
    if request.param == "server":
        running: ServerProcess = request.getfixturevalue("server")
        async with httpx.AsyncClient(base_url=running.url) as over_http:
            yield over_http
    else:
        async with serving(store, admin_token=ADMIN_TOKEN, routing_seed=7) as app:
            yield app.client

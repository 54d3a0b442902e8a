"""Shared fixtures: one model store per session, real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.processes import ServerProcess, running_server
from service.build import build_store
from service.store import Dataset, Manifest, load_holdout, load_manifest
from tests.utils import ADMIN_ENV


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


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    """A server with every variant, an admin token and a fixed routing seed."""
    with running_server(store, options=["--routing-seed", "7"], env=ADMIN_ENV) as running:
        yield running

"""One worker or several, the server answers alike and cleans up alike: `/metrics?name[]=`
selects the same samples by a family's name or a sample's name, and stopping leaves
nothing behind in the temporary folder (no private rollout folder of the settings check)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import body

pytestmark = pytest.mark.integration

ASKED = [
    ["perfserve_batch_size"],
    ["perfserve_batch_size_count"],
    ["perfserve_rejected_requests"],
    ["perfserve_rejected_requests_total", "perfserve_runners"],
]


@contextmanager
def server_in(store: Path, temporary: Path, workers: int) -> Iterator[ServerProcess]:
    env = {"TMPDIR": str(temporary)}
    with running_server(store, options=["--workers", str(workers)], env=env) as server:
        yield server


def samples(server: ServerProcess, names: list[str]) -> set[tuple[str, str]]:
    text = httpx.get(f"{server.url}/metrics", params={"name[]": names}).text
    return {
        (sample.name, sample.labels.get("le", ""))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_and_two_workers_select_the_same_samples_and_leave_nothing_behind(
    store: Path, holdout: Dataset, tmp_path: Path
) -> None:
    selected: dict[int, list[set[tuple[str, str]]]] = {}
    for workers in (1, 2):
        temporary = tmp_path / f"tmp{workers}"
        temporary.mkdir()
        with server_in(store, temporary, workers) as server:
            for _ in range(4):
                answer = httpx.post(
                    f"{server.url}/predict",
                    json=body(holdout.features[:2]),
                    headers={"Connection": "close"},
                )
                assert answer.status_code == 200
            httpx.post(f"{server.url}/predict", content=b"{")  # one rejection
            selected[workers] = [samples(server, names) for names in ASKED]
        # (Only perfserve's own: a native library of the runtimes may leave a file there.)
        left = [name for name in os.listdir(temporary) if name.startswith("perfserve-")]
        assert left == [], f"--workers {workers} left {left} behind"
    assert selected[1] == selected[2]
    family, count = selected[1][0], selected[1][1]
    assert ("perfserve_batch_size_count", "") in family and (
        "perfserve_batch_size_bucket",
        "1.0",
    ) in family
    assert count == {("perfserve_batch_size_count", "")}

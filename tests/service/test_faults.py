"""Fault injection: refused unless allowed, visible while on, and each kind observable over
HTTP as a real slow, failing or wrong variant would be."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from perfserve_common.processes import ServerProcess, running_server
from service.faults import flip_rows
from service.runtimes import Prediction, open_runner
from service.store import Dataset, Manifest
from tests.utils import body, run_perfserve, server_timing

LATENCY_MS = 200
ERROR_RATE = 0.3
FAULTS = [
    f"onnx_int8:latency-ms={LATENCY_MS}",
    f"onnx_fp32:error-rate={ERROR_RATE}",
    "sklearn_fp32:flip-rate=1",
]


@pytest.fixture(scope="module")
def faulty(store: Path) -> Iterator[ServerProcess]:
    """Every variant with a fault; inline inference, where a blocking fault would stall the
    whole event loop; seeded, so the faults come out the same on every run."""
    options = ["--allow-faults", "--inference", "inline", "--max-batch-size", "1"]
    options += ["--routing-seed", "7"]
    for fault in FAULTS:
        options += ["--inject", fault]
    with running_server(store, options=options) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize(
    ("arguments", "environment"),
    [
        (["--inject", "onnx_int8:latency-ms=5"], {}),
        ([], {"PERFSERVE_INJECT": "onnx_int8:error-rate=0.5"}),
        (["--inject", "onnx_int8:latency-ms=5", "--no-allow-faults"], {}),
    ],
)
def test_faults_are_refused_unless_allowed(
    store: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], environment: dict[str, str]
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    done = run_perfserve("serve", "--store", str(store), "--port", "1", *arguments)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--inject" in done.stderr and "--allow-faults" in done.stderr


@pytest.mark.integration
def test_a_fault_on_a_variant_not_served_is_refused(store: Path) -> None:
    done = run_perfserve(
        "serve", "--store", str(store), "--allow-faults", "--inject", "onnx_int9:error-rate=1"
    )
    assert done.returncode == 2 and "onnx_int9" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.integration
def test_active_faults_are_listed_and_exported(faulty: ServerProcess) -> None:
    faults = {
        name: httpx.get(f"{faulty.url}/models/{name}").json()["faults"]
        for name in ("onnx_int8", "onnx_fp32", "sklearn_fp32")
    }
    assert faults == {
        "onnx_int8": {"latency-ms": LATENCY_MS},
        "onnx_fp32": {"error-rate": ERROR_RATE},
        "sklearn_fp32": {"flip-rate": 1.0},
    }
    gauge = {
        (sample.labels["variant"], sample.labels["kind"]): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{faulty.url}/metrics").text)
        for sample in family.samples
        if sample.name == "perfserve_injected_fault"
    }
    assert gauge == {
        ("onnx_int8", "latency-ms"): LATENCY_MS,
        ("onnx_fp32", "error-rate"): ERROR_RATE,
        ("sklearn_fp32", "flip-rate"): 1.0,
    }


def test_no_fault_is_shown_where_none_is_set(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/models/onnx_int8").json()["faults"] == {}
    assert "perfserve_injected_fault{" not in httpx.get(f"{server.url}/metrics").text


@pytest.mark.integration
def test_injected_errors_are_the_variants_500s(faulty: ServerProcess, holdout: Dataset) -> None:
    payload = body(holdout.features[:1])
    with httpx.Client(base_url=faulty.url) as client:
        statuses = [
            client.post("/models/onnx_fp32/predict", json=payload).status_code for _ in range(300)
        ]
    assert set(statuses) == {200, 500}
    assert stats.binomtest(statuses.count(500), len(statuses), ERROR_RATE).pvalue > 0.001


@pytest.mark.integration
def test_flipped_answers_are_the_mirror_of_the_real_ones(
    faulty: ServerProcess, store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    rows = holdout.features[:40]
    info = manifest.variants["sklearn_fp32"]
    real = open_runner(store / info.path, info.format, manifest.task).predict(rows)
    answer = httpx.post(f"{faulty.url}/models/sklearn_fp32/predict", json=body(rows)).json()
    assert real.probabilities is not None
    np.testing.assert_allclose(answer["probabilities"], real.probabilities[:, ::-1], rtol=1e-6)
    assert answer["predictions"] == [1 - label for label in real.labels.tolist()]


async def _slow_and_fast(url: str, payload: dict[str, object]) -> tuple[list[float], list[float]]:
    """Three requests to the slow variant at once and, meanwhile, answered requests to
    another variant one after another; the server-side infer time of the slow ones and the
    client-side time of the others."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        slow = [
            asyncio.create_task(client.post("/models/onnx_int8/predict", json=payload))
            for _ in range(3)
        ]
        others: list[float] = []
        while not all(task.done() for task in slow):
            started = time.perf_counter()
            response = await client.post("/models/onnx_fp32/predict", json=payload)
            if response.status_code == 200:
                others.append(time.perf_counter() - started)
        infer = [server_timing((await task).headers["server-timing"])["infer"] for task in slow]
    return infer, others


@pytest.mark.integration
def test_injected_latency_slows_its_variant_only(faulty: ServerProcess, holdout: Dataset) -> None:
    infer_ms, others_s = asyncio.run(_slow_and_fast(faulty.url, body(holdout.features[:1])))
    assert min(infer_ms) >= LATENCY_MS
    # Three 200 ms batches one after another: had the injected wait blocked the event
    # loop, every other request would have waited up to 200 ms as well.
    assert len(others_s) >= 5
    assert statistics.median(others_s) < LATENCY_MS / 1000 / 4


def test_flip_rows_mirrors_only_the_chosen_rows() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    prediction = Prediction(np.array([0, 1, 0]), probabilities)
    flipped = flip_rows(prediction, np.array([True, False, True]), np.array([0, 1]))
    assert flipped.labels.tolist() == [1, 1, 1]
    expected = np.array([[0.1, 0.9], [0.2, 0.8], [0.4, 0.6]], dtype=np.float32)
    np.testing.assert_array_equal(flipped.probabilities, expected)
    assert prediction.labels.tolist() == [0, 1, 0]  # the runner's own answer is untouched

"""A row's answer must not depend on what it is batched with, for every variant.

The batcher merges concurrent requests into one model call, so a request's batch-mates are
other clients' rows, outliers included (a x100 unit mistake, rows of 1000s or 1e30). Each
hold-out row is answered alone, then inside mixed batches, through the runners and through
HTTP; labels must be equal and probabilities within TOLERANCE (the ONNX variants are
bit-for-bit equal; scikit-learn differs by one float32 step, 1.2e-7, because BLAS sums a
one-row product in another order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson
import pytest

from perfserve.modelstore.int8 import outlier_rows
from perfserve_common.processes import ServerProcess, running_server
from service.runtimes import Prediction, Runner, open_runner, open_variant
from service.store import Dataset, Manifest
from tests.utils import body

TOLERANCE = 1e-6
SEED = 3
VARIANTS = ["sklearn_fp32", "onnx_fp32", "onnx_int8"]


def _alone(runner: Runner, rows: np.ndarray) -> list[Prediction]:
    return [runner.predict(rows[i : i + 1]) for i in range(len(rows))]


def _mixed_batches(
    rows: np.ndarray, outliers: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches of 2 to 64 rows with the outliers at random places; yields each
    batch and where the hold-out rows sit in it (index into `rows`, or -1 for outliers)."""
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(rows))
    start = 0
    while start < len(order):
        size = int(rng.integers(2, 64))
        members = list(order[start : start + size])
        for outlier in range(len(outliers)):
            members.insert(int(rng.integers(0, len(members) + 1)), -1 - outlier)
        index = np.asarray(members)
        batch = np.vstack([rows[i] if i >= 0 else outliers[-1 - i] for i in index])
        yield batch, np.where(index >= 0, index, -1)
        start += size


def _assert_same(alone: Prediction, mixed: Prediction, position: int, row: int) -> None:
    assert alone.labels[0] == mixed.labels[position], f"hold-out row {row} changed label"
    if alone.probabilities is not None:
        assert mixed.probabilities is not None
        np.testing.assert_allclose(
            mixed.probabilities[position], alone.probabilities[0], rtol=0, atol=TOLERANCE
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_rows_answer_is_the_same_alone_and_in_mixed_batches(
    store: Path, manifest: Manifest, holdout: Dataset, variant: str
) -> None:
    runner = open_variant(store, manifest.variants[variant], manifest.task)
    alone = _alone(runner, holdout.features)
    checked = 0
    for batch, index in _mixed_batches(holdout.features, outlier_rows(holdout.features)):
        mixed = runner.predict(batch)
        for position, row in enumerate(index):
            if row >= 0:
                _assert_same(alone[row], mixed, position, int(row))
                checked += 1
    assert checked == len(holdout.features)


def test_the_dynamic_method_fails_this_check_and_is_not_served(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    """The check above is not vacuous: dynamic int8, kept for the bench, fails it."""
    assert manifest.int8 is not None
    dynamic = manifest.int8.candidates["dynamic"]
    assert not dynamic.batch_independent and dynamic.batch_changed_rows > 0
    assert manifest.int8.chosen != "dynamic"
    assert manifest.variants["onnx_int8"].method == manifest.int8.chosen
    runner = open_runner(store / dynamic.path, "onnx", manifest.task)
    alone = _alone(runner, holdout.features)
    batch, index = next(_mixed_batches(holdout.features, outlier_rows(holdout.features)))
    mixed = runner.predict(batch)
    differences = [
        np.abs(mixed.probabilities[position] - alone[row].probabilities[0]).max()  # type: ignore[index]
        for position, row in enumerate(index)
        if row >= 0
    ]
    assert np.nanmax(differences) > TOLERANCE or np.isnan(differences).any()


@pytest.fixture(scope="module")
def merging_server(store: Path) -> Iterator[ServerProcess]:
    """Outliers reach the models (no range refusal); every model call takes 5 ms longer,
    so that concurrent requests queue behind it and merge, whatever the client's pace."""
    slow = ",".join(f"{variant}:latency-ms=5" for variant in VARIANTS)
    options = ["--max-feature-range-factor", "0", "--allow-faults", "--inject", slow]
    with running_server(store, options=options) as running:
        yield running


async def _post_together(url: str, bodies: list[dict[str, object]]) -> list[tuple[int, Any]]:
    """POST every body at the same moment, one connection each: connect all, write all,
    then read all. A client that sends one request at a time (httpx on a loaded machine
    sends a few dozen per second) would never fill a batch."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    streams = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in bodies))
    for (_, writer), document in zip(streams, bodies, strict=True):
        payload = orjson.dumps(document)
        writer.write(
            f"POST {parts.path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
    answers = await asyncio.gather(*(reader.read() for reader, _ in streams))
    for _, writer in streams:
        writer.close()
    results = []
    for answer in answers:
        head, _, content = answer.partition(b"\r\n\r\n")
        results.append((int(head.split(b" ", 2)[1]), orjson.loads(content)))
    return results


def _batches_and_rows(server: ServerProcess, variant: str) -> tuple[float, float]:
    text = httpx.get(f"{server.url}/metrics").text
    values = {}
    for line in text.splitlines():
        for suffix in ("count", "sum"):
            if line.startswith(f'perfserve_batch_size_{suffix}{{variant="{variant}"}}'):
                values[suffix] = float(line.split()[-1])
    return values.get("count", 0.0), values.get("sum", 0.0)


@pytest.mark.integration
@pytest.mark.parametrize("variant", VARIANTS)
def test_concurrent_requests_merged_into_batches_get_their_own_answers(
    merging_server: ServerProcess, holdout: Dataset, variant: str
) -> None:
    url = f"{merging_server.url}/models/{variant}/predict"
    rows = holdout.features
    with httpx.Client() as client:  # one request at a time: every row in its own batch
        alone = [client.post(url, json=body(row)).json() for row in rows]
    outliers = [body(row) for row in outlier_rows(rows)]
    bodies: list[dict[str, object]] = []
    for i, row in enumerate(rows):
        bodies.append(body(row))
        if i % 8 == 0:
            bodies.append(outliers[(i // 8) % len(outliers)])
    batches_before, rows_before = _batches_and_rows(merging_server, variant)

    responses = asyncio.run(_post_together(url, bodies))

    batches_after, rows_after = _batches_and_rows(merging_server, variant)
    mean_batch = (rows_after - rows_before) / (batches_after - batches_before)
    assert mean_batch > 2, f"requests were not merged (mean batch {mean_batch:.2f} rows)"
    answers = iter(responses)
    for i, expected in enumerate(alone):
        status, got = next(answers)
        assert status == 200, got
        assert got["predictions"] == expected["predictions"], f"hold-out row {i}"
        np.testing.assert_allclose(
            got["probabilities"], expected["probabilities"], rtol=0, atol=TOLERANCE
        )
        if i % 8 == 0:  # an outlier: answered, or refused alone when its answer is NaN
            status, got = next(answers)
            assert status in (200, 422), got

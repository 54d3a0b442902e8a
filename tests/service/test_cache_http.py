"""A real server with `--cache-rows`: a split change, or a new model behind the same
address, never answers from another model's cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from perfserve.modelstore.build import build_store, reference_data
from perfserve_common.processes import running_server
from service.runtimes import open_runner
from service.store import Dataset, Manifest, load_manifest
from tests.utils import ADMIN, ADMIN_ENV, body

pytestmark = pytest.mark.integration

FP32, INT8 = "sklearn_fp32", "onnx_int8"
CACHED = ["--cache-rows", "64", "--routing-seed", "7"]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, holdout: Dataset) -> Path:
    """Another model version for the same features: a new release of the model."""
    train, _ = reference_data()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(
        train.features, train.target
    )
    path = tmp_path_factory.mktemp("retrained") / "store"
    build_store(path, pipeline, holdout, model_name="retrained")
    return path


def offline(store: Path, manifest: Manifest, variant: str, rows: np.ndarray) -> np.ndarray:
    """The variant's probabilities for `rows`, computed here, row by row."""
    info = manifest.variants[variant]
    runner = open_runner(store / info.path, info.format, manifest.task)
    answers = [runner.predict(row[None, :].astype(np.float32)).probabilities for row in rows]
    return np.concatenate([a for a in answers if a is not None])


def a_row_they_answer_differently(store: Path, manifest: Manifest, rows: np.ndarray) -> int:
    """A row whose probabilities the fp32 and int8 variants give differently: an answer
    from the wrong cache would show."""
    differ = np.abs(offline(store, manifest, FP32, rows) - offline(store, manifest, INT8, rows))
    return int(np.argmax(differ.max(axis=1)))


def predict(url: str, row: np.ndarray) -> tuple[dict[str, Any], bool]:
    """The answer through the live split, and whether it came from the cache."""
    answer = httpx.post(f"{url}/predict", json=body(row))
    answer.raise_for_status()
    return answer.json(), answer.headers["server-timing"].startswith("cache;")


def set_split(url: str, variant: str) -> None:
    split = {"weights": {variant: 1.0}, "shadow": None}
    httpx.put(f"{url}/traffic", json=split, headers=ADMIN).raise_for_status()


def test_a_split_change_is_answered_by_the_new_variant_not_a_cached_answer(
    store: Path, manifest: Manifest, holdout: Dataset
) -> None:
    rows = holdout.features[:40]
    row = rows[a_row_they_answer_differently(store, manifest, rows)]
    fp32, int8 = (offline(store, manifest, name, row[None, :])[0] for name in (FP32, INT8))
    assert not np.allclose(fp32, int8, rtol=0, atol=1e-6)
    with running_server(store, options=CACHED, env=ADMIN_ENV) as server:
        set_split(server.url, FP32)
        first, first_cached = predict(server.url, row)
        again, again_cached = predict(server.url, row)
        set_split(server.url, INT8)
        moved, moved_cached = predict(server.url, row)
        moved_again, moved_again_cached = predict(server.url, row)
        set_split(server.url, FP32)
        back, back_cached = predict(server.url, row)
    assert (first_cached, again_cached) == (False, True)
    assert first["variant"] == again["variant"] == back["variant"] == FP32
    assert first["probabilities"][0] == pytest.approx(fp32.tolist(), abs=1e-6)
    assert again == first and back == first and back_cached
    assert (moved_cached, moved_again_cached) == (False, True)
    assert moved["variant"] == moved_again["variant"] == INT8
    assert moved["probabilities"][0] == pytest.approx(int8.tolist(), abs=1e-6)
    assert moved_again == moved


def test_a_new_model_version_at_the_same_address_answers_with_its_own_model(
    store: Path, retrained: Path, holdout: Dataset, tmp_path: Path
) -> None:
    served = tmp_path / "model_store"
    shutil.copytree(store, served)
    row = holdout.features[3]
    old_version = load_manifest(store).variants[FP32].model_version
    new_manifest = load_manifest(retrained)
    new = offline(retrained, new_manifest, FP32, row[None, :])[0]
    with running_server(served, options=CACHED, env=ADMIN_ENV) as server:
        predict(server.url, row)
        before, before_cached = predict(server.url, row)
        port = urlsplit(server.url).port
    shutil.rmtree(served)
    shutil.copytree(retrained, served)
    with running_server(served, port=port, options=CACHED, env=ADMIN_ENV) as server:
        after, after_cached = predict(server.url, row)
        described = httpx.get(f"{server.url}/models/{FP32}").json()["cache"]
    assert before_cached and before["model_version"] == old_version
    assert not after_cached
    assert after["model_version"] == new_manifest.variants[FP32].model_version != old_version
    assert after["probabilities"][0] == pytest.approx(new.tolist(), abs=1e-6)
    assert after["probabilities"] != before["probabilities"]
    assert described["model_version"] == after["model_version"] and described["rows"] == 1

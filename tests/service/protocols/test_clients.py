"""The V2 and V1 routes driven by real clients over loopback: NVIDIA's `tritonclient` and
KServe's Python SDK; both answer as `/predict` does on the whole hold-out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from perfserve_common.processes import ServerProcess
from service.store import Dataset, Manifest
from tests.utils.kserve_sdk_env import KSERVE_SDK, kserve_python

pytestmark = pytest.mark.integration

CHUNK = 64  # rows per request


def _native(server: ServerProcess, variant: str, rows: np.ndarray) -> dict[str, list[object]]:
    body = {"instances": rows.tolist()}
    answer = httpx.post(f"{server.url}/models/{variant}/predict", json=body)
    answer.raise_for_status()
    document: dict[str, list[object]] = answer.json()
    return document


def test_tritonclient_answers_as_predict_on_the_holdout(
    server: ServerProcess, holdout: Dataset, manifest: Manifest
) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_model_metadata("perfserve")
    assert metadata["inputs"][0]["shape"] == [-1, manifest.n_features]
    names = [output["name"] for output in metadata["outputs"]]
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in names]
    for variant in manifest.variants:
        assert client.is_model_ready(variant)
        for start in range(0, len(holdout.features), CHUNK):
            rows = holdout.features[start : start + CHUNK].astype(np.float32)
            tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=False)
            result = client.infer(variant, [tensor], outputs=outputs, request_id=f"r{start}")
            native = _native(server, variant, rows)
            assert result.get_response()["id"] == f"r{start}"
            assert result.as_numpy("predictions").tolist() == native["predictions"]
            probabilities = np.asarray(native["probabilities"], dtype=np.float32)
            assert np.array_equal(result.as_numpy("probabilities"), probabilities)


def test_tritonclients_default_binary_tensors_answer_as_predict(
    server: ServerProcess, holdout: Dataset
) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    rows = holdout.features[:CHUNK].astype(np.float32)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)  # binary_data=True: raw bytes after the JSON
    result = client.infer("onnx_int8", [tensor])  # no outputs named: all of them
    native = _native(server, "onnx_int8", rows)
    assert result.as_numpy("predictions").tolist() == native["predictions"]


def test_tritonclient_reports_a_refusal_with_its_message(server: ServerProcess) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    tensor = triton.InferInput("input-0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 3), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException, match="the model expects 30"):
        client.infer("perfserve", [tensor])


def test_kserve_sdk_answers_as_predict_on_the_holdout(
    server: ServerProcess, holdout: Dataset, manifest: Manifest, tmp_path: Path
) -> None:
    python = kserve_python()
    chunks = [
        holdout.features[start : start + CHUNK].tolist()
        for start in range(0, len(holdout.features), CHUNK)
    ]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"models": list(manifest.variants), "chunks": chunks}))
    done = subprocess.run(
        [python, str(KSERVE_SDK), server.url, str(request)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for protocol in ("v1", "v2"):
        asked = answers[protocol]
        assert asked["live"] and asked.get("ready", True)
        assert asked["models_ready"] == dict.fromkeys(manifest.variants, True)
        for variant in manifest.variants:
            native = [_native(server, variant, np.asarray(rows))["predictions"] for rows in chunks]
            assert asked["predictions"][variant] == native, (protocol, variant)
        assert "unknown model 'no-such-model'" in asked["unknown_model"]

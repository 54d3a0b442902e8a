"""The Open Inference Protocol (V2 REST) in process: the same answers as `/predict`, the
same refusals with the same statuses, in V2's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.protocols.codec import SPLIT_MODEL
from service.store import Dataset
from tests.utils.inprocess import InProcess, serving
from tests.utils.protocols import v2_body

ROW = [1.0] * 30


async def test_infer_answers_as_predict_does_for_every_variant(
    client: httpx.AsyncClient, holdout: Dataset, manifest: Any
) -> None:
    rows = holdout.features[:16]
    for variant in manifest.variants:
        native = (await client.post(f"/models/{variant}/predict", json=_instances(rows))).json()
        answer = await client.post(f"/v2/models/{variant}/infer", json=v2_body(rows, "FP64"))
        assert answer.status_code == 200, answer.text
        outputs = {output["name"]: output for output in answer.json()["outputs"]}
        assert outputs["predictions"]["data"] == native["predictions"]
        assert outputs["predictions"]["shape"] == [16]
        assert outputs["probabilities"]["shape"] == [16, 2]
        # The same float32 values, though /predict writes some with more digits.
        flat = np.asarray(native["probabilities"], dtype=np.float32).ravel()
        assert np.array_equal(np.asarray(outputs["probabilities"]["data"], np.float32), flat)
        assert answer.headers["x-variant"] == variant
        assert answer.json()["parameters"] == {"variant": variant}


async def test_fp32_nested_data_id_and_chosen_outputs(client: httpx.AsyncClient) -> None:
    request = v2_body(np.array([ROW, ROW]), "FP32", nested=True)
    request |= {"id": "req-7", "parameters": {"a": 1}, "outputs": [{"name": "predictions"}]}
    answer = await client.post("/v2/models/onnx_fp32/infer", json=request)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["id"] == "req-7"
    assert document["model_name"] == "onnx_fp32"
    assert [output["name"] for output in document["outputs"]] == ["predictions"]
    assert "queue;dur=" in answer.headers["server-timing"]


async def test_the_split_model_follows_the_split_and_sticks_per_user(store: Path) -> None:
    split = {"onnx_fp32": 0.5, "onnx_int8": 0.5}
    async with serving(store, traffic=split, routing_seed=3) as app:
        for user in ("alice", "bob", "carol", "dave"):
            headers = {"X-User-Id": user}
            native = await app.client.post("/predict", json=_instances([ROW]), headers=headers)
            v2 = await app.client.post(
                f"/v2/models/{SPLIT_MODEL}/infer", json=v2_body([ROW]), headers=headers
            )
            v1 = await app.client.post(
                f"/v1/models/{SPLIT_MODEL}:predict", json=_instances([ROW]), headers=headers
            )
            assert native.headers["x-variant"] == v2.headers["x-variant"]
            assert native.headers["x-variant"] == v1.headers["x-variant"]
            assert v2.json()["model_name"] == SPLIT_MODEL


def _bad(rows: list[Any], datatype: str = "FP32", **tensor: Any) -> dict[str, Any]:
    body = {"name": "input-0", "shape": [len(rows), 30], "datatype": datatype, "data": rows}
    return {"inputs": [body | tensor]}


TOO_BIG = [[*ROW[:29], 1e39]]
FAR = [[*ROW[:4], 1e30, *ROW[5:]]]


@pytest.mark.parametrize(
    ("native", "v2", "status"),
    [
        ({"instances": [[1, 2]]}, _bad([[1, 2]]), 422),
        ({"instances": [["a", *ROW[1:]]]}, _bad([["a", *ROW[1:]]]), 422),
        ({"instances": [[True, *ROW[1:]]]}, _bad([True, *ROW[1:]]), 422),
        ({"instances": []}, _bad([], shape=[0, 30]), 422),
        ({"instances": [ROW] * 1025}, _bad([ROW] * 1025), 413),
        ({"instances": TOO_BIG}, _bad(TOO_BIG), 422),
        ({"instances": FAR}, _bad(FAR, "FP64"), 422),
        ({"rows": [ROW]}, {"tensors": []}, 422),
        ([ROW], [ROW], 422),
        ({"instances": "x"}, _bad([ROW], datatype="BYTES"), 422),
        ({"instances": [ROW]}, _bad([ROW], shape=[2, 30]), None),
        ({"instances": [ROW]}, _bad(ROW, shape=[1, 30], parameters=[1]), None),
        ({"instances": [ROW]}, {"id": 5, **_bad([ROW])}, None),
        ({"instances": [ROW]}, {"outputs": [{"name": "x"}], **_bad([ROW])}, None),
    ],
)
async def test_what_predict_refuses_v2_refuses_with_the_same_status(
    client: httpx.AsyncClient, native: Any, v2: Any, status: int | None
) -> None:
    """`None`: a request /predict accepts and V2 must refuse for V2's own rules (422)."""
    answer = await client.post("/v2/models/onnx_fp32/infer", json=v2)
    expected = await client.post("/models/onnx_fp32/predict", json=native)
    assert expected.status_code == (status or 200)
    assert answer.status_code == (status or 422), answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"", {}, 400, "body is empty"),
        (b'{"inputs": [', {}, 400, "malformed JSON"),
        (b'{"inputs": [{"data": [NaN]}]}', {}, 400, "NaN"),
        (b"{}", {"content-type": "text/plain"}, 415, "application/json"),
        (b"{}", {"x-variant": "nope"}, 404, "unknown"),
    ],
)
async def test_what_the_hot_path_refuses_before_parsing_is_refused_in_v2_shape(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    path = "/v2/models/perfserve/infer"
    answer = await client.post(path, content=content, headers=headers)
    assert answer.status_code == status
    assert message in answer.json()["error"]


async def test_unknown_models_and_wrong_methods(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v2/models/nope/infer", json=v2_body([ROW]))
    # The same words for the model wherever a V2 client names it: infer and metadata.
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("unknown model 'nope'; available: ['perfserve',")
    metadata = (await client.get("/v2/models/nope")).json()["error"]
    assert metadata == answer.json()["error"]
    assert (await client.get("/v2/models/nope/ready")).status_code == 404
    answer = await client.get("/v2/models/perfserve/infer")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


async def test_metadata_and_health(client: httpx.AsyncClient, manifest: Any) -> None:
    assert (await client.get("/v2")).json()["name"] == "perfserve"
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    metadata = (await client.get("/v2/models/perfserve")).json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 30]}]
    assert [output["name"] for output in metadata["outputs"]] == ["predictions", "probabilities"]
    for variant in manifest.variants:
        described = (await client.get(f"/v2/models/{variant}")).json()
        assert described["versions"] == [manifest.variants[variant].model_version]
        ready = await client.get(f"/v2/models/{variant}/ready")
        assert ready.json() == {"name": variant, "ready": True}


async def test_not_ready_is_503_in_v2_shape(store: Path) -> None:
    from tests.utils.inprocess import started

    async with started(store) as app:
        _not_loaded(app)
        answer = await app.client.get("/v2/health/ready")
        assert answer.status_code == 503 and answer.json()["ready"] is False
        assert (await app.client.get("/v2/models/perfserve/ready")).status_code == 503
        infer = await app.client.post("/v2/models/perfserve/infer", json=v2_body([ROW]))
        assert infer.status_code == 503 and "not ready" in infer.json()["error"]
        assert infer.headers["retry-after"] == "1"


def _not_loaded(app: InProcess) -> None:
    """Hold the service in its loading state, whatever the loader has done by now."""
    app.service.loader.ready = False


def _instances(rows: Any) -> dict[str, Any]:
    return {"instances": np.asarray(rows).tolist()}


def _binary_body(
    rows: np.ndarray, datatype: str = "FP32", size: int | None = None
) -> tuple[bytes, int]:
    """A V2 body in the binary tensor extension, and where its JSON ends."""
    raw = rows.astype("<f4" if datatype == "FP32" else "<f8").tobytes()
    parameters = {"binary_data_size": len(raw) if size is None else size}
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": datatype}
    header = orjson.dumps({"inputs": [tensor | {"parameters": parameters}]})
    return header + raw, len(header)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
async def test_binary_tensors_answer_as_json_ones_do(
    client: httpx.AsyncClient, holdout: Dataset, datatype: str
) -> None:
    rows = holdout.features[:8]
    body, length = _binary_body(rows, datatype)
    headers = {"inference-header-content-length": str(length)}
    headers["content-type"] = "application/octet-stream"
    binary = await client.post("/v2/models/onnx_fp32/infer", content=body, headers=headers)
    assert binary.status_code == 200, binary.text
    native = await client.post("/models/onnx_fp32/predict", json=_instances(rows))
    outputs = {output["name"]: output["data"] for output in binary.json()["outputs"]}
    assert outputs["predictions"] == native.json()["predictions"]


async def test_binary_tensors_of_the_wrong_size_are_refused(client: httpx.AsyncClient) -> None:
    body, length = _binary_body(np.ones((2, 30)), size=100)
    headers = {"inference-header-content-length": str(length)}
    answer = await client.post("/v2/models/onnx_fp32/infer", content=body, headers=headers)
    assert answer.status_code == 422 and "needs 240" in answer.json()["error"]
    headers = {"inference-header-content-length": "99999"}
    answer = await client.post("/v2/models/onnx_fp32/infer", content=body, headers=headers)
    assert answer.status_code == 400 and "within the body" in answer.json()["error"]
    nan = np.full((1, 30), np.nan)
    body, length = _binary_body(nan)
    headers = {"inference-header-content-length": str(length)}
    answer = await client.post("/v2/models/onnx_fp32/infer", content=body, headers=headers)
    assert answer.status_code == 422


async def test_an_oversized_body_is_refused_before_it_is_read(store: Path) -> None:
    async with serving(store, max_body_bytes=1024) as app:
        body = orjson.dumps(v2_body(np.ones((20, 30))))
        answer = await app.client.post("/v2/models/perfserve/infer", content=body)
        assert answer.status_code == 413 and "exceeds 1024" in answer.json()["error"]


async def test_naming_a_variant_as_the_model_obeys_the_forcing_policy(store: Path) -> None:
    async with serving(store, force_variants=["onnx_fp32"]) as app:
        native = await app.client.post("/models/onnx_int8/predict", json=_instances([ROW]))
        v2 = await app.client.post("/v2/models/onnx_int8/infer", json=v2_body([ROW]))
        v1 = await app.client.post("/v1/models/onnx_int8:predict", json=_instances([ROW]))
        assert native.status_code == v2.status_code == v1.status_code == 403
        assert v2.json()["error"] == v1.json()["error"] == native.json()["detail"]
        allowed = await app.client.post("/v2/models/onnx_fp32/infer", json=v2_body([ROW]))
        split = await app.client.post("/v2/models/perfserve/infer", json=v2_body([ROW]))
        assert allowed.status_code == split.status_code == 200

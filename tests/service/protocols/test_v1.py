"""KServe V1 in process: `/predict`'s body and refusals, V1's answer and error shape."""

from __future__ import annotations

from typing import Any

import httpx

from service.store import Dataset

ROW = [1.0] * 30


async def test_predict_answers_as_predict_does(
    client: httpx.AsyncClient, holdout: Dataset, manifest: Any
) -> None:
    body = {"instances": holdout.features[:16].tolist()}
    for variant in manifest.variants:
        native = (await client.post(f"/models/{variant}/predict", json=body)).json()
        answer = await client.post(f"/v1/models/{variant}:predict", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"predictions": native["predictions"]}
        assert answer.headers["x-variant"] == variant


async def test_refusals_use_the_v1_error_shape(client: httpx.AsyncClient) -> None:
    for body, status in (({"instances": [[1, 2]]}, 422), ({"instances": [ROW] * 1025}, 413)):
        answer = await client.post("/v1/models/perfserve:predict", json=body)
        assert answer.status_code == status
        assert set(answer.json()) == {"error"}
    answer = await client.post("/v1/models/nope:predict", json={"instances": [ROW]})
    assert answer.status_code == 404 and "unknown" in answer.json()["error"]


async def test_model_status_and_liveness(client: httpx.AsyncClient, manifest: Any) -> None:
    assert (await client.get("/")).json() == {"status": "alive"}
    models = (await client.get("/v1/models")).json()["models"]
    assert models == ["perfserve", *manifest.variants]
    assert (await client.get("/v1/models/perfserve")).json() == {"name": "perfserve", "ready": True}
    assert (await client.get("/v1/models/nope")).status_code == 404

"""Every endpoint, through the app in process and over real HTTP to a real server."""

from __future__ import annotations

import httpx
import numpy as np

from perfserve_common.processes import ServerProcess
from service.store import Dataset, Manifest
from tests.utils import ADMIN, body, server_timing


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["variants"] == ["sklearn_fp32", "onnx_fp32", "onnx_int8"]


async def test_predict_answers_with_variant_version_and_timing(
    client: httpx.AsyncClient, holdout: Dataset, manifest: Manifest
) -> None:
    response = await client.post("/predict", json=body(holdout.features[:3]))
    assert response.status_code == 200
    answer = response.json()
    assert answer["variant"] == "sklearn_fp32" == response.headers["x-variant"]
    assert answer["model_version"] == manifest.variants["sklearn_fp32"].model_version
    assert set(answer["predictions"]) <= set(manifest.classes or [])
    assert np.allclose(np.sum(answer["probabilities"], axis=1), 1.0, atol=1e-5)
    timing = server_timing(response.headers["server-timing"])
    assert set(timing) == {"queue", "infer", "total"}
    assert 0 <= timing["queue"] + timing["infer"] <= timing["total"]


async def test_each_variant_can_be_asked_for_by_path_or_header(
    client: httpx.AsyncClient, holdout: Dataset
) -> None:
    for variant in ("sklearn_fp32", "onnx_fp32", "onnx_int8"):
        by_path = await client.post(f"/models/{variant}/predict", json=body(holdout.features[:1]))
        by_header = await client.post(
            "/predict", json=body(holdout.features[:1]), headers={"X-Variant": variant}
        )
        assert by_path.json()["variant"] == by_header.json()["variant"] == variant


async def test_models_lists_what_each_variant_is(
    client: httpx.AsyncClient, manifest: Manifest
) -> None:
    listing = (await client.get("/models")).json()
    assert listing["n_features"] == 30
    variants = {v["name"]: v for v in listing["variants"]}
    assert variants.keys() == manifest.variants.keys()
    int8 = variants["onnx_int8"]
    assert int8["format"] == "onnx" and int8["precision"] == "int8"
    assert int8["file_size_bytes"] < variants["onnx_fp32"]["file_size_bytes"]
    assert int8["metrics"]["accuracy"] > 0.9
    assert int8["loaded"] and int8["memory_bytes"] >= 0
    one = (await client.get("/models/onnx_int8")).json()
    assert one["sha256"] == manifest.variants["onnx_int8"].sha256
    assert (await client.get("/models/nope")).status_code == 404


async def test_traffic_split_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    split = {"weights": {"sklearn_fp32": 0.5, "onnx_int8": 0.5}}
    assert (await client.put("/traffic", json=split)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.put("/traffic", json=split, headers=wrong)).status_code == 401
    changed = await client.put("/traffic", json=split, headers=ADMIN)
    assert changed.status_code == 200
    assert (await client.get("/traffic")).json()["weights"] == split["weights"]
    restore = {"weights": {"sklearn_fp32": 1.0}}
    assert (await client.put("/traffic", json=restore, headers=ADMIN)).status_code == 200


async def test_bad_traffic_changes_are_refused(client: httpx.AsyncClient) -> None:
    unknown = {"weights": {"ghost": 1.0}}
    refused = await client.put("/traffic", json=unknown, headers=ADMIN)
    assert refused.status_code == 422 and "ghost" in refused.json()["detail"]
    negative = {"weights": {"onnx_int8": -1.0}}
    assert (await client.put("/traffic", json=negative, headers=ADMIN)).status_code == 422


async def test_sticky_users_keep_their_variant_over_http(
    client: httpx.AsyncClient, holdout: Dataset
) -> None:
    split = {"weights": {"sklearn_fp32": 0.5, "onnx_int8": 0.5}}
    (await client.put("/traffic", json=split, headers=ADMIN)).raise_for_status()
    seen: dict[str, set[str]] = {}
    for _ in range(3):
        for user in range(40):
            response = await client.post(
                "/predict", json=body(holdout.features[:1]), headers={"X-User-Id": f"u{user}"}
            )
            seen.setdefault(f"u{user}", set()).add(response.headers["x-variant"])
    assert all(len(variants) == 1 for variants in seen.values())
    assert {v for variants in seen.values() for v in variants} == {"sklearn_fp32", "onnx_int8"}
    restore = {"weights": {"sklearn_fp32": 1.0}}
    (await client.put("/traffic", json=restore, headers=ADMIN)).raise_for_status()


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"/models", "/traffic", "/healthz", "/readyz", "/metrics"} <= set(paths)
    predict = paths["/predict"]["post"]
    assert {"200", "422", "503", "504"} <= set(predict["responses"])
    assert {p["name"] for p in predict["parameters"]} == {"X-Variant", "X-User-Id"}
    assert "instances" in document["components"]["schemas"]["PredictRequest"]["properties"]


def test_memory_stays_flat_under_sustained_traffic(server: ServerProcess, holdout: Dataset) -> None:
    def resident_bytes() -> float:
        for line in httpx.get(f"{server.url}/metrics").text.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return float(line.split()[1])
        raise AssertionError("process_resident_memory_bytes is missing")

    payload = body(holdout.features[:4])
    with httpx.Client(base_url=server.url) as client:

        def traffic(requests: int) -> None:
            for i in range(requests):
                variant = ("sklearn_fp32", "onnx_fp32", "onnx_int8")[i % 3]
                client.post(f"/models/{variant}/predict", json=payload).raise_for_status()
                client.post("/predict", json={"instances": [[1.0]]})  # a rejected one too

        traffic(1500)  # allocator pools, caches and metric children settle
        settled = resident_bytes()
        traffic(3000)
        grown = resident_bytes() - settled
    assert grown < 4 * 1024 * 1024, f"resident memory grew {grown / 2**20:.1f} MiB"

"""Every endpoint of a real server on a loopback port, over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np

from common.processes import ServerProcess
from service.store import Dataset, Manifest
from tests.utils import ADMIN, body, server_timing


def test_health_and_readiness(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["variants"] == ["sklearn_fp32", "onnx_fp32", "onnx_int8"]


def test_predict_answers_with_variant_version_and_timing(
    server: ServerProcess, holdout: Dataset, manifest: Manifest
) -> None:
    response = httpx.post(f"{server.url}/predict", json=body(holdout.features[:3]))
    assert response.status_code == 200
    answer = response.json()
    assert answer["variant"] == "sklearn_fp32" == response.headers["x-variant"]
    assert answer["model_version"] == manifest.variants["sklearn_fp32"].model_version
    assert set(answer["predictions"]) <= set(manifest.classes or [])
    assert np.allclose(np.sum(answer["probabilities"], axis=1), 1.0, atol=1e-5)
    timing = server_timing(response.headers["server-timing"])
    assert set(timing) == {"queue", "infer", "total"}
    assert 0 <= timing["queue"] + timing["infer"] <= timing["total"]


def test_each_variant_can_be_asked_for_by_path_or_header(
    server: ServerProcess, holdout: Dataset
) -> None:
    for variant in ("sklearn_fp32", "onnx_fp32", "onnx_int8"):
        by_path = httpx.post(
            f"{server.url}/models/{variant}/predict", json=body(holdout.features[:1])
        )
        by_header = httpx.post(
            f"{server.url}/predict", json=body(holdout.features[:1]), headers={"X-Variant": variant}
        )
        assert by_path.json()["variant"] == by_header.json()["variant"] == variant


def test_models_lists_what_each_variant_is(server: ServerProcess, manifest: Manifest) -> None:
    listing = httpx.get(f"{server.url}/models").json()
    assert listing["n_features"] == 30
    variants = {v["name"]: v for v in listing["variants"]}
    assert variants.keys() == manifest.variants.keys()
    int8 = variants["onnx_int8"]
    assert int8["format"] == "onnx" and int8["precision"] == "int8"
    assert int8["file_size_bytes"] < variants["onnx_fp32"]["file_size_bytes"]
    assert int8["metrics"]["accuracy"] > 0.9
    assert int8["loaded"] and int8["memory_bytes"] >= 0
    one = httpx.get(f"{server.url}/models/onnx_int8").json()
    assert one["sha256"] == manifest.variants["onnx_int8"].sha256
    assert httpx.get(f"{server.url}/models/nope").status_code == 404


def test_traffic_split_needs_the_admin_token(server: ServerProcess) -> None:
    split = {"weights": {"sklearn_fp32": 0.5, "onnx_int8": 0.5}}
    assert httpx.put(f"{server.url}/traffic", json=split).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.put(f"{server.url}/traffic", json=split, headers=wrong).status_code == 401
    changed = httpx.put(f"{server.url}/traffic", json=split, headers=ADMIN)
    assert changed.status_code == 200
    assert httpx.get(f"{server.url}/traffic").json()["weights"] == split["weights"]
    restore = {"weights": {"sklearn_fp32": 1.0}}
    assert httpx.put(f"{server.url}/traffic", json=restore, headers=ADMIN).status_code == 200


def test_bad_traffic_changes_are_refused(server: ServerProcess) -> None:
    unknown = {"weights": {"ghost": 1.0}}
    refused = httpx.put(f"{server.url}/traffic", json=unknown, headers=ADMIN)
    assert refused.status_code == 422 and "ghost" in refused.json()["detail"]
    negative = {"weights": {"onnx_int8": -1.0}}
    assert httpx.put(f"{server.url}/traffic", json=negative, headers=ADMIN).status_code == 422


def test_sticky_users_keep_their_variant_over_http(server: ServerProcess, holdout: Dataset) -> None:
    split = {"weights": {"sklearn_fp32": 0.5, "onnx_int8": 0.5}}
    httpx.put(f"{server.url}/traffic", json=split, headers=ADMIN).raise_for_status()
    with httpx.Client(base_url=server.url) as client:
        seen: dict[str, set[str]] = {}
        for _ in range(3):
            for user in range(40):
                response = client.post(
                    "/predict", json=body(holdout.features[:1]), headers={"X-User-Id": f"u{user}"}
                )
                seen.setdefault(f"u{user}", set()).add(response.headers["x-variant"])
    assert all(len(variants) == 1 for variants in seen.values())
    assert {v for variants in seen.values() for v in variants} == {"sklearn_fp32", "onnx_int8"}
    restore = {"weights": {"sklearn_fp32": 1.0}}
    httpx.put(f"{server.url}/traffic", json=restore, headers=ADMIN).raise_for_status()


def test_openapi_document_is_served(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
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

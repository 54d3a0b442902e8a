"""`PUT /traffic` and the start-up split: splits that would break serving are refused with
a 4xx (or a one-line start-up error), rescaling is said, every change has a version."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.store import Dataset
from tests.utils import ADMIN, body, run_perfserve

BASELINE = {"weights": {"sklearn_fp32": 1.0}, "shadow": None}


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ('{"weights": {"": 1}}', "names must not be empty"),
        ('{"weights": {"onnx_int8": NaN}}', "finite"),
        ('{"weights": {"onnx_int8": Infinity, "sklearn_fp32": 1}}', "finite"),
        ('{"weights": {"onnx_int8": -0.1, "sklearn_fp32": 1}}', "not negative"),
        ('{"weights": {"onnx_int8": 0, "sklearn_fp32": 0}}', "at least one weight"),
        ('{"weights": {}}', "at least 1 item"),
        ('{"weights": {"onnx_int9": 1}}', "unknown variant"),
        ('{"weights": {"onnx_int8": 1}, "shadow": ""}', "unknown variant"),
    ],
)
async def test_splits_that_would_break_serving_are_refused(
    client: httpx.AsyncClient, holdout: Dataset, raw: str, detail: str
) -> None:
    before = (await client.get("/traffic")).json()
    headers = {**ADMIN, "content-type": "application/json"}
    refused = await client.put("/traffic", content=raw, headers=headers)
    assert refused.status_code == 422
    assert detail in refused.text
    assert (await client.get("/traffic")).json() == before
    served = await client.post("/predict", json=body(holdout.features[:1]))
    assert served.status_code == 200


async def test_rescaled_weights_are_reported_and_versions_increase(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.put("/traffic", json=BASELINE, headers=ADMIN)).json()
    assert "normalized_from" not in first
    huge = {"weights": {"sklearn_fp32": 1e308, "onnx_int8": 1e308}}
    answer = await client.put("/traffic", json=huge, headers=ADMIN)
    assert answer.status_code == 200
    assert answer.json()["weights"] == {"sklearn_fp32": 0.5, "onnx_int8": 0.5}
    assert answer.json()["normalized_from"] == huge["weights"]
    assert answer.json()["version"] == first["version"] + 1
    shown = (await client.get("/traffic")).json()
    assert shown["version"] == first["version"] + 1 and "normalized_from" not in shown
    (await client.put("/traffic", json=BASELINE, headers=ADMIN)).raise_for_status()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--traffic", "sklearn_fp32=nan"], {}, "finite"),
        ([], {"PERFSERVE_TRAFFIC": "sklearn_fp32=0.9,onnx_int8=NaN"}, "finite"),
        ([], {"PERFSERVE_TRAFFIC": "=1"}, "names must not be empty"),
        (["--traffic", "sklearn_fp32=0.9,onnx_int9=0.1"], {}, "onnx_int9"),
        (["--shadow", "onnx_int9"], {}, "onnx_int9"),
        (["--workers", "2", "--traffic", "onnx_int9=1"], {}, "onnx_int9"),
    ],
)
def test_a_bad_start_up_split_is_one_error_not_a_traceback(
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    environment: dict[str, str],
    message: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    done = run_perfserve("serve", "--store", str(store), "--port", "1", *arguments)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr

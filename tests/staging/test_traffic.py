"""`python -m perfserve.staging.traffic`: one split applied to every replica, or to none
silently."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from perfserve.staging.traffic import apply_split, main, replica_urls
from perfserve_common.processes import ServerProcess, running_server
from service.routing import TrafficSplit
from tests.utils import ADMIN_ENV, ADMIN_TOKEN

CANARY = '{"weights": {"sklearn_fp32": 0.9, "onnx_int8": 0.1}, "shadow": "onnx_fp32"}'


def test_a_name_gives_one_url_per_address() -> None:
    assert replica_urls("http://127.0.0.1:8123") == ["http://127.0.0.1:8123"]
    assert replica_urls("http://localhost:8123") == ["http://127.0.0.1:8123"]


def test_command_line_sets_and_shows_the_split(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERFSERVE_ADMIN_TOKEN", ADMIN_TOKEN)
    assert main([CANARY, "--url", server.url]) == 0
    shown = httpx.get(f"{server.url}/traffic").json()
    assert shown["weights"] == {"sklearn_fp32": 0.9, "onnx_int8": 0.1}
    assert main(["--url", server.url]) == 0
    printed = capsys.readouterr().out
    assert f"{server.url}  version={shown['version']}  weights={{'sklearn_fp32': 0.9, " in printed
    assert "shadow=onnx_fp32" in printed


@pytest.mark.integration
def test_one_put_reaches_replicas_sharing_the_file_and_a_laggard_is_named(
    store: Path, tmp_path: Path
) -> None:
    def replica(split_file: Path) -> AbstractContextManager[ServerProcess]:
        options = ["--split-file", str(split_file)]
        return running_server(store, options=options, env=ADMIN_ENV)

    split = TrafficSplit(weights={"sklearn_fp32": 0.5, "onnx_int8": 0.5})
    with replica(tmp_path / "a.json") as a, replica(tmp_path / "a.json") as b:
        applied = apply_split(a.url, split, ADMIN_TOKEN, [a.url, b.url])
        assert {s["version"] for s in applied.values()} == {2}
        assert all(s["weights"] == split.weights for s in applied.values())
        with replica(tmp_path / "elsewhere.json") as stray:
            with pytest.raises(RuntimeError) as behind:
                apply_split(a.url, split, ADMIN_TOKEN, [a.url, stray.url], timeout_s=1.0)
            assert stray.url in str(behind.value) and f"{a.url} " not in str(behind.value)
        with pytest.raises(RuntimeError, match="401"):
            apply_split(a.url, split, "wrong-token", [a.url])


def test_command_line_refuses_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    assert main([CANARY, "--url", "http://127.0.0.1:9"]) == 1
    assert "PERFSERVE_ADMIN_TOKEN" in capsys.readouterr().err

"""`perfserve rollout`'s command line: mistakes are one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils import run_perfserve


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "5,1"], "--steps: Value error, steps must rise"),
        (["--steps", "5,x"], "--steps: a comma-separated list of percentages"),
        (["--steps", "0,50"], "--steps: Value error, steps are percentages in (0, 100]"),
        (["--window-seconds", "0"], "--window-seconds: Input should be greater than 0"),
        (["--policy", "slo_p99_s"], "--policy: NAME=VALUE, not 'slo_p99_s'"),
        (["--policy", "nope=1"], "--policy: Value error, unknown judge setting(s) ['nope']"),
        (["--policy", "slo_p99_s=fast"], "--policy: Input should be a valid number"),
    ],
)
def test_a_bad_plan_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = run_perfserve("rollout", "--baseline", "a", "--candidate", "b", *args)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"perfserve rollout: error: {message}")


@pytest.mark.integration
def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    done = run_perfserve("rollout", "--baseline", "a", "--candidate", "b")
    assert done.returncode == 2
    assert "PERFSERVE_ADMIN_TOKEN" in done.stderr


@pytest.mark.integration
def test_the_token_may_come_from_a_mounted_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    token = tmp_path / "token"
    monkeypatch.setenv("PERFSERVE_ADMIN_TOKEN_FILE", str(token))
    missing = run_perfserve("rollout", "--baseline", "a", "--candidate", "b")
    assert missing.returncode == 2 and f"PERFSERVE_ADMIN_TOKEN_FILE {token}" in missing.stderr
    token.write_text("a-token-from-a-secret\n")
    unreachable = run_perfserve(
        "rollout", "--url", "http://127.0.0.1:9", "--baseline", "a", "--candidate", "b"
    )
    assert unreachable.returncode == 2 and "cannot reach the service" in unreachable.stderr

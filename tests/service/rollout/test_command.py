"""`perfserve rollout`'s command line: mistakes are one line and exit 2."""

from __future__ import annotations

import os
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
        (["--policy", "family_alpha=2"], "--policy: Value error, family_alpha must be in (0, 1)"),
        (["--policy", "score_bins=0"], "--policy: Value error, score_bins must be in (1, inf)"),
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


def token_file(folder: Path, mode: int) -> Path:
    path = folder / "admin-token"
    path.write_text("a-token-of-some-length\n")
    os.chmod(path, mode)
    return path


ANYWHERE = ["--baseline", "a", "--candidate", "b", "--url", "http://127.0.0.1:9"]


@pytest.mark.integration
def test_the_token_may_come_from_a_file_like_serve_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    private = run_perfserve(
        "rollout", *ANYWHERE, "--admin-token-file", str(token_file(tmp_path, 0o600))
    )
    missing = run_perfserve("rollout", *ANYWHERE, "--admin-token-file", str(tmp_path / "none"))
    # The token was read: what fails is reaching the (absent) service.
    assert private.returncode == 2 and "cannot reach the service" in private.stderr
    assert "warning" not in private.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and "--admin-token-file" in line and "No such file" in line


@pytest.mark.integration
def test_a_token_file_others_can_read_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    done = run_perfserve(
        "rollout", *ANYWHERE, "--admin-token-file", str(token_file(tmp_path, 0o644))
    )
    assert "warning: the admin token file" in done.stderr and "mode 0644" in done.stderr


@pytest.mark.integration
def test_the_token_may_come_from_a_mounted_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PERFSERVE_ADMIN_TOKEN", raising=False)
    token = tmp_path / "token"
    monkeypatch.setenv("PERFSERVE_ADMIN_TOKEN_FILE", str(token))
    missing = run_perfserve("rollout", "--baseline", "a", "--candidate", "b")
    assert missing.returncode == 2 and f"--admin-token-file {token}" in missing.stderr
    token.write_text("a-token-from-a-secret\n")
    unreachable = run_perfserve(
        "rollout", "--url", "http://127.0.0.1:9", "--baseline", "a", "--candidate", "b"
    )
    assert unreachable.returncode == 2 and "cannot reach the service" in unreachable.stderr

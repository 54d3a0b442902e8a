"""`perfserve staging up` runs the staging guide's rollout rehearsal end to end.

Three replicas behind nginx with a fault on onnx_int8 (30% of its labels flipped), as a
newcomer starts them: `perfserve staging up`, then `perfserve rollout` through nginx with
the printed token file. Under steady load through nginx, the faulted candidate is rolled
back naming the predictions gate, then the healthy onnx_fp32 is promoted, and no request
fails: every answer is a 200 (no shedding is expected at this load, so a 503 or 429 would
be a failure too; a flipped label is still a 200). `perfserve staging down` then leaves
no process of the stack behind.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from perfserve.staging.stack import TOOLS, Stack, read_state
from service.store import Dataset
from tests.utils import body, eventually, require_tool, run_perfserve
from tests.utils.rollout import POLICY, Load

pytestmark = pytest.mark.slow

BASELINE, FAULTED, HEALTHY = "sklearn_fp32", "onnx_int8", "onnx_fp32"
ROLLOUT = ["--steps", "20,50,100", "--window-seconds", "30", "--max-extensions", "2"]
ROLLOUT_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def state_dir(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A stack started as the guide starts it (every port free, so tests can run side by
    side); stopped at the end whatever happened."""
    for tool in TOOLS:
        require_tool(tool)
    state = tmp_path_factory.mktemp("staging")
    up = run_perfserve(
        "staging", "up", "--replicas", "3", "--inject", f"{FAULTED}:flip-rate=0.3",
        "--store", str(store), "--state-dir", str(state),
        "--port", "0", "--prometheus-port", "0", "--grafana-port", "0",
        env={"PERFSERVE_SHADOW_SHARE": "1"},  # passed on to the replicas, as compose does
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:
        run_perfserve("staging", "down", "--state-dir", str(state))


def stack_of(state_dir: Path) -> Stack:
    stack = read_state(state_dir)
    assert stack is not None
    return stack


def rollout(stack: Stack, candidate: str) -> subprocess.CompletedProcess[str]:
    policy = [f"--policy={name}={value}" for name, value in POLICY.items()]
    env = {key: value for key, value in os.environ.items() if key != "PERFSERVE_ADMIN_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "perfserve", "rollout", "--url", stack.service,
         "--admin-token-file", stack.token_file,
         "--baseline", BASELINE, "--candidate", candidate, *ROLLOUT, *policy],
        capture_output=True, text=True, timeout=ROLLOUT_TIMEOUT_S, env=env,
    )  # fmt: skip


def test_up_prints_every_address_and_a_private_token_file(state_dir: Path) -> None:
    stack = stack_of(state_dir)
    again = run_perfserve("staging", "up", "--state-dir", str(state_dir), "--port", "0")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    for url in [stack.service, *stack.replicas, stack.prometheus, stack.token_file]:
        assert url in again.stdout
    assert len(stack.replicas) == 3
    assert stat.S_IMODE(Path(stack.token_file).stat().st_mode) == 0o600
    assert ("Grafana           skipped" in again.stdout) == (stack.grafana is None)
    assert httpx.get(f"{stack.service}/readyz").status_code == 200
    replicas = {url.removeprefix("http://") for url in stack.replicas}
    eventually(lambda: scraped(stack.prometheus) == replicas, timeout_s=30)


def scraped(prometheus: str) -> set[str]:
    """The replicas Prometheus scrapes successfully (it finds them within a few seconds)."""
    targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
    return {
        target["labels"]["instance"]
        for target in targets
        if target["labels"]["job"] == "perfserve" and target["health"] == "up"
    }


def test_the_rollout_rehearsal_rolls_back_then_promotes_and_no_request_fails(
    state_dir: Path, holdout: Dataset
) -> None:
    stack = stack_of(state_dir)
    with Load([stack.service], body(holdout.features[:1]), users=4) as load:
        faulted = rollout(stack, FAULTED)
        healthy = rollout(stack, HEALTHY)
        promoted = load.outcomes[HEALTHY]
        eventually(lambda: load.outcomes[HEALTHY] > promoted)  # on the promoted split, too
    assert faulted.returncode == 1, faulted.stdout + faulted.stderr
    assert "predictions fail: " in faulted.stdout
    assert f"{FAULTED} weight 0" in faulted.stdout
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert f"every step passed; {HEALTHY} at 100%" in healthy.stdout
    split = httpx.get(f"{stack.service}/traffic").json()
    assert split["weights"] == {HEALTHY: 1.0}
    statuses = {
        key: n for key, n in load.outcomes.items() if key not in (BASELINE, FAULTED, HEALTHY)
    }
    assert statuses.keys() == {200}, load.outcomes
    assert all(load.outcomes[variant] > 0 for variant in (BASELINE, FAULTED, HEALTHY))


def test_down_leaves_no_process_behind(state_dir: Path) -> None:
    stack = stack_of(state_dir)
    groups = {part.pid for part in stack.parts}
    down = run_perfserve("staging", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert f"stopped {len(stack.parts)} processes" in down.stdout
    assert not live_members(groups)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.service}/readyz", timeout=2)
    again = run_perfserve("staging", "down", "--state-dir", str(state_dir))
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def live_members(groups: set[int]) -> list[str]:
    """Every live (not zombie) process in one of the process groups `groups`, as ps sees
    them."""
    listed = subprocess.run(
        ["ps", "-e", "-o", "pgid=,stat=,args="], capture_output=True, text=True, check=True
    )
    rows = (line.split(maxsplit=2) for line in listed.stdout.splitlines())
    return [" ".join(row) for row in rows if int(row[0]) in groups and not row[1].startswith("Z")]


@pytest.mark.parametrize("present", [[], ["nginx"]])
def test_a_missing_tool_is_one_line_naming_it_and_exit_4(
    present: Sequence[str], store: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in present:
        (bin_dir / tool).symlink_to(require_tool(tool))
    result = run_perfserve(
        "staging", "up", "--store", str(store), "--state-dir", str(tmp_path / "state"),
        env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert result.returncode == 4, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    for tool in TOOLS:
        assert (f"{tool}:" in line) == (tool not in present), line
    assert not (tmp_path / "state").exists()

"""A rollout outlives the process that runs its controller: after a SIGTERM and a restart
(what a rolling deploy does) the rollout shows its controller as stale, any replica takes
it over, and an abort sent to any replica is acted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from perfserve_common.processes import running_server
from tests.utils import ADMIN, ADMIN_ENV, poll

pytestmark = pytest.mark.integration

BASELINE, CANDIDATE = "sklearn_fp32", "onnx_fp32"


def environment(tmp_path: Path, takeover_s: float) -> dict[str, str]:
    return {
        **ADMIN_ENV,
        "PERFSERVE_SPLIT_FILE": str(tmp_path / "traffic.json"),
        "PERFSERVE_TRAFFIC": f"{BASELINE}=1",
        "PERFSERVE_ROLLOUT_TAKEOVER_S": str(takeover_s),
    }


def status(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/rollout/status", headers=ADMIN).json()
    return answer


def start_canary(url: str) -> dict[str, Any]:
    """A 1% canary that waits (no traffic, a long window) so it is running when stopped."""
    plan = {"baseline": BASELINE, "candidate": CANDIDATE, "steps": [1, 100]}
    started = httpx.post(
        f"{url}/rollout/start", json={**plan, "window_seconds": 600}, headers=ADMIN
    )
    assert started.status_code == 202, started.text
    traffic = poll(lambda: httpx.get(f"{url}/traffic").json(), lambda t: CANDIDATE in t["weights"])
    assert traffic["weights"][CANDIDATE] == pytest.approx(0.01)
    state: dict[str, Any] = started.json()
    return state


def test_after_sigterm_and_restart_the_rollout_is_stale_and_an_abort_ends_it(
    store: Path, tmp_path: Path
) -> None:
    env = environment(tmp_path, takeover_s=0)  # no automatic takeover: only commands
    with running_server(store, env=env) as first:
        owner = start_canary(first.url)["owner"]
        assert first.stop() == 0
    with running_server(store, env=env) as second:
        stale = status(second.url)
        metrics = httpx.get(f"{second.url}/metrics").text
        aborted = httpx.post(f"{second.url}/rollout/abort", headers=ADMIN)
        after = poll(lambda: status(second.url), lambda s: s["status"] != "running")
        traffic = poll(
            lambda: httpx.get(f"{second.url}/traffic").json(),
            lambda t: t["weights"] == {BASELINE: 1.0},
        )
    assert stale["status"] == "running" and stale["controller"] == "stale", stale
    assert stale["heartbeat_age_s"] > 0
    assert "perfserve_rollout_controller_stale 1.0" in metrics
    assert aborted.status_code == 202, aborted.text
    assert after["status"] == "aborted", after["decisions"]
    assert after["owner"] != owner and after["controller"] == "done"
    actions = [decision["action"] for decision in after["decisions"]]
    assert actions[-2:] == ["takeover", "abort"], actions
    assert traffic["weights"] == {BASELINE: 1.0} and traffic["shadow"] is None


def test_a_live_replica_takes_over_a_rollout_whose_controller_stopped(
    store: Path, tmp_path: Path
) -> None:
    env = environment(tmp_path, takeover_s=1)
    with running_server(store, env=env) as follower:
        with running_server(store, env=env) as controller:
            owner = start_canary(controller.url)["owner"]
        taken = poll(lambda: status(follower.url), lambda s: s["owner"] != owner)
        metrics = httpx.get(f"{follower.url}/metrics").text
        paused = httpx.post(f"{follower.url}/rollout/pause", headers=ADMIN)
        after = poll(lambda: status(follower.url), lambda s: s["status"] == "paused")
    assert taken["owner"] != owner and taken["status"] == "running", taken
    assert taken["decisions"][-1]["action"] == "takeover"
    assert "perfserve_rollout_controller_stale 0.0" in metrics
    assert paused.status_code == 202 and after["status"] == "paused"
    assert after["weights"][CANDIDATE] == pytest.approx(0.01)

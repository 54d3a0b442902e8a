"""Rollouts against real servers under real concurrent load: two replicas sharing one
split file, a client spreading requests over both as a load balancer would, and the
rollout driven through the admin endpoints and `perfserve rollout`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfserve_common.processes import ServerProcess, running_server
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_ENV, ADMIN_TOKEN, body, poll
from tests.utils.rollout import POLICY, Load

pytestmark = pytest.mark.slow

BASELINE, CANDIDATE = "sklearn_fp32", "onnx_fp32"


@contextmanager
def replicas(store: Path, tmp_path: Path, *extra: str, count: int = 2) -> Iterator[list[str]]:
    """`count` servers following one split file, every routed request mirrored."""
    env = {
        **ADMIN_ENV,
        "PERFSERVE_SPLIT_FILE": str(tmp_path / "traffic.json"),
        "PERFSERVE_SHADOW_SHARE": "1",
        "PERFSERVE_TRAFFIC": f"{BASELINE}=1",
    }
    options = list(extra)
    with ExitStack() as stack:
        servers: list[ServerProcess] = [
            stack.enter_context(running_server(store, options=options, env=env))
            for _ in range(count)
        ]
        yield [server.url for server in servers]


def start(url: str, **plan: Any) -> dict[str, Any]:
    request = {"baseline": BASELINE, "candidate": CANDIDATE, "policy": POLICY, **plan}
    response = httpx.post(f"{url}/rollout/start", json=request, headers=ADMIN)
    assert response.status_code == 202, response.text
    state: dict[str, Any] = response.json()
    return state


def followed_weights(
    urls: Sequence[str], expected: dict[str, float], timeout_s: float = 5.0
) -> list[dict[str, float]]:
    """Every replica's weights once all show `expected`, or as they are at the timeout:
    the controller's replica changes at once, the others within their split poll."""
    return poll(
        lambda: [httpx.get(f"{url}/traffic").json()["weights"] for url in urls],
        lambda weights: all(w == expected for w in weights),
        timeout_s,
    )


def metrics_showing(url: str, lines: Sequence[str], timeout_s: float = 5.0) -> str:
    """`/metrics` once it shows every line, or as it is at the timeout: a replica mirrors
    the shared rollout state on its next poll."""
    return poll(
        lambda: httpx.get(f"{url}/metrics").text,
        lambda text: all(line in text for line in lines),
        timeout_s,
    )


def rollout_status(url: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{url}/rollout/status", headers=ADMIN).json()
    return state


def wait_settled(url: str, timeout_s: float = 120.0) -> dict[str, Any]:
    state = poll(lambda: rollout_status(url), lambda s: s["status"] != "running", timeout_s, 0.3)
    assert state["status"] != "running", f"still running after {timeout_s} s: {state['decisions']}"
    return state


def test_a_healthy_candidate_is_promoted_on_both_replicas_and_no_request_fails(
    store: Path, holdout: Dataset, tmp_path: Path
) -> None:
    with replicas(store, tmp_path) as urls:
        with Load(urls, body(holdout.features[:1])) as load:
            start(urls[0], steps=[20, 50, 100], window_seconds=20, max_extensions=3)
            state = wait_settled(urls[1])  # the other replica answers for the controller
        splits = followed_weights(urls, {CANDIDATE: 1.0})
        promoted = [
            "perfserve_rollout_step 3.0",
            "perfserve_rollout_candidate_weight 1.0",
            'perfserve_rollout_status{status="promoted"} 1.0',
        ]
        controller, follower = (metrics_showing(url, promoted) for url in urls)
    assert state["status"] == "promoted", "\n".join(d["detail"] for d in state["decisions"])
    actions = [decision["action"] for decision in state["decisions"]]
    assert actions.count("advance") == 1 and actions[-1] == "promote"
    assert splits == [{CANDIDATE: 1.0}] * 2
    failed = {k: v for k, v in load.outcomes.items() if isinstance(k, str) or k != 200}
    assert set(failed) <= {BASELINE, CANDIDATE}, load.outcomes
    assert load.outcomes[CANDIDATE] > 0 and load.outcomes[BASELINE] > 0
    for metrics in (controller, follower):  # every replica mirrors the shared state
        assert all(line in metrics for line in promoted), metrics
    assert 'perfserve_rollout_verdicts_total{gate="latency",outcome="pass"} 2.0' in controller


def test_too_little_traffic_pauses_and_the_command_line_exits_3(
    store: Path, tmp_path: Path
) -> None:
    with replicas(store, tmp_path, count=1) as urls:
        command = [sys.executable, "-m", "perfserve", "rollout", "--url", urls[0],
                   "--baseline", BASELINE, "--candidate", CANDIDATE, "--steps", "5,100",
                   "--window-seconds", "1", "--max-extensions", "1"]  # fmt: skip
        env = {**os.environ, "PERFSERVE_ADMIN_TOKEN": ADMIN_TOKEN}
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        state = httpx.get(f"{urls[0]}/rollout/status", headers=ADMIN).json()
        weights = httpx.get(f"{urls[0]}/traffic").json()["weights"]
        aborted = httpx.post(f"{urls[0]}/rollout/abort", headers=ADMIN)
        after = poll(lambda: rollout_status(urls[0]), lambda s: s["status"] == "aborted")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "extend" in done.stdout and "pause" in done.stdout
    assert state["status"] == "paused"
    assert {gate["outcome"] for gate in state["gates"]} == {"inconclusive"}
    assert weights[CANDIDATE] == pytest.approx(0.05)
    assert aborted.status_code == 202 and after["status"] == "aborted"


def test_the_endpoints_need_the_token_and_refuse_a_second_rollout(
    store: Path, tmp_path: Path
) -> None:
    with replicas(store, tmp_path, count=1) as urls:
        url = urls[0]
        assert httpx.get(f"{url}/rollout/status").status_code == 401
        assert httpx.get(f"{url}/rollout/status", headers=ADMIN).status_code == 404
        assert httpx.post(f"{url}/rollout/pause", headers=ADMIN).status_code == 409
        bad = {"baseline": BASELINE, "candidate": "nope"}
        assert httpx.post(f"{url}/rollout/start", json=bad, headers=ADMIN).status_code == 422
        start(url, steps=[5, 100], window_seconds=30)
        second = httpx.post(
            f"{url}/rollout/start",
            json={"baseline": BASELINE, "candidate": CANDIDATE},
            headers=ADMIN,
        )
        assert second.status_code == 409
        assert httpx.post(f"{url}/rollout/promote", headers=ADMIN).status_code == 202
        assert followed_weights([url], {CANDIDATE: 1.0}) == [{CANDIDATE: 1.0}]


@pytest.mark.parametrize(
    ("fault", "gate"),
    [("latency-ms=20", "latency"), ("error-rate=0.2", "errors"), ("flip-rate=0.3", "predictions")],
)
def test_a_faulty_candidate_is_rolled_back_at_the_first_step_naming_the_gate(
    store: Path, holdout: Dataset, tmp_path: Path, fault: str, gate: str
) -> None:
    inject = ["--allow-faults", "--inject", f"{CANDIDATE}:{fault}"]
    with replicas(store, tmp_path, *inject) as urls:
        with Load(urls, body(holdout.features[:1])) as load:
            start(urls[0], steps=[20, 50, 100], window_seconds=30, max_extensions=2)
            state = wait_settled(urls[1])
        weights = followed_weights(urls, {BASELINE: 1.0})
    assert state["status"] == "rolled_back", [d["detail"] for d in state["decisions"]]
    assert state["step"] == 1
    failed = next(g for g in state["gates"] if g["gate"] == gate)
    assert failed["outcome"] == "fail" and failed["figures"], failed
    judged = next(d for d in state["decisions"] if d["action"] == "fail")
    assert f"{gate} fail: " in judged["detail"]
    assert weights == [{BASELINE: 1.0}] * 2
    assert load.outcomes[BASELINE] > 0 and load.outcomes[500 if gate == "errors" else 200] > 0

"""Clients cannot bypass a rollout: naming the candidate (X-Variant, or its own path)
needs the admin token while the rollout runs and after it was rolled back or aborted, a
`force_variants` allow-list limits what clients may name at all, and one X-User-Id adds
a bounded number of records to the judge's evidence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.rollout.samples import SampleRecorder
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_TOKEN, body, eventually_async
from tests.utils.inprocess import InProcess, serving

BASELINE, CANDIDATE = "sklearn_fp32", "onnx_fp32"


async def forced(app: InProcess, holdout: Dataset, variant: str, **headers: str) -> int:
    by_header = await app.client.post(
        "/predict", json=body(holdout.features[:1]), headers={"X-Variant": variant, **headers}
    )
    by_path = await app.client.post(
        f"/models/{variant}/predict", json=body(holdout.features[:1]), headers=headers
    )
    assert by_header.status_code == by_path.status_code, (by_header.text, by_path.text)
    return by_header.status_code


async def test_the_candidate_is_admin_only_while_a_rollout_runs_and_after_its_abort(
    store: Path, holdout: Dataset
) -> None:
    async with serving(store, admin_token=ADMIN_TOKEN) as app:
        before = await forced(app, holdout, CANDIDATE)
        plan = {"baseline": BASELINE, "candidate": CANDIDATE, "steps": [1, 100]}
        started = await app.client.post("/rollout/start", json=plan, headers=ADMIN)
        assert started.status_code == 202
        running = await forced(app, holdout, CANDIDATE)
        by_admin = await forced(app, holdout, CANDIDATE, **ADMIN)
        baseline = await forced(app, holdout, BASELINE)
        assert (await app.client.post("/rollout/abort", headers=ADMIN)).status_code == 202
        await eventually_async(lambda: app.service.traffic.router.weight(CANDIDATE) == 0.0)
        after_abort = await forced(app, holdout, CANDIDATE)
        refused = await app.client.post("/predict", json=body(holdout.features[:1]),
                                        headers={"X-Variant": CANDIDATE})  # fmt: skip
    assert before == 200 and baseline == 200 and by_admin == 200
    assert running == 403 and after_abort == 403
    assert "admin token" in refused.json()["detail"]
    assert app.sample("perfserve_rejected_requests_total", reason="forced_variant") >= 4


async def test_force_variants_limits_what_a_client_may_name(store: Path, holdout: Dataset) -> None:
    async with serving(store, admin_token=ADMIN_TOKEN, force_variants=[BASELINE]) as app:
        allowed = await forced(app, holdout, BASELINE)
        other = await forced(app, holdout, "onnx_int8")
        by_admin = await forced(app, holdout, "onnx_int8", **ADMIN)
        unknown = await app.client.post(
            "/predict", json=body(holdout.features[:1]), headers={"X-Variant": "nope"}
        )
    assert (allowed, other, by_admin, unknown.status_code) == (200, 403, 200, 404)


def test_force_variants_must_name_loaded_variants(store: Path) -> None:
    from perfserve_common.usage import UsageError
    from service.app import create_app
    from service.settings import Settings

    with pytest.raises(UsageError, match="--force-variants"):
        create_app(Settings(store=store, force_variants=["nope"]))


def test_the_check_before_workers_start_refuses_an_unloaded_forced_variant(store: Path) -> None:
    """`serve --workers N` builds one `Service` to refuse, once and in one line, what every
    worker would refuse (uvicorn restarts a worker that fails to start, without end)."""
    from perfserve_common.usage import UsageError
    from service.metrics import Metrics, new_registry
    from service.settings import Settings
    from service.state import Service

    with pytest.raises(UsageError, match="--force-variants"):
        Service(Settings(store=store, force_variants=["nope"]), Metrics(new_registry()))


def test_one_user_id_adds_a_bounded_number_of_records_per_window() -> None:
    recorder = SampleRecorder(10_000, per_user=5)
    recorder.follow("a", "b", since=0.0)
    for _ in range(100):
        if recorder.admit(b"attacker"):
            recorder.record("b", 0.1, 200)
    for user in range(50):
        if recorder.admit(b"user-%d" % user):
            recorder.record("a", 0.001, 200)
    for _ in range(30):
        if recorder.admit(None):
            recorder.record("a", 0.001, 200)
    variants = [request[1] for request in recorder.requests]
    assert variants.count("b") == 5 and variants.count("a") == 80
    recorder.follow("a", "b", since=1.0)  # a new window: every user starts again
    assert recorder.admit(b"attacker")


async def test_sticky_requests_of_one_user_are_capped_in_the_evidence(
    store: Path, holdout: Dataset
) -> None:
    async with serving(store, admin_token=ADMIN_TOKEN, rollout_samples_per_user=3) as app:
        plan = {"baseline": BASELINE, "candidate": CANDIDATE, "steps": [50, 100]}
        await app.client.post("/rollout/start", json=plan, headers=ADMIN)
        recorder = app.service.canary.rollouts.recorder
        await eventually_async(lambda: recorder.active)
        async with asyncio.TaskGroup() as group:
            for _ in range(40):
                group.create_task(
                    app.client.post(
                        "/predict",
                        json=body(holdout.features[:1]),
                        headers={"X-User-Id": "one-user"},
                    )
                )
    assert len(recorder.requests) <= 3

"""Admin endpoints under /rollout: start, status, pause, resume, abort, promote.

Token-protected like `PUT /traffic`. Any replica answers: the state and the commands go
through the shared folder, and the replica that accepted the start runs the controller.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from service.api import ServiceDep, require_admin
from service.rollout.plan import RolloutPlan, RolloutState
from service.rollout.replica import RolloutConflict, SplitUnavailable
from service.rollout.shared import Command
from service.shared_split import ReadOnlySplit

router = APIRouter(prefix="/rollout", tags=["rollout"], dependencies=[Depends(require_admin)])


@router.post("/start", status_code=202)
async def start(plan: RolloutPlan, service: ServiceDep) -> dict[str, Any]:
    """Begin a rollout of `candidate` against `baseline`; 409 while another one runs, or
    when this replica only follows a read-only split; 503 while the split cannot be set."""
    if (file := service.traffic.split.file) is not None and service.traffic.split.read_only:
        raise HTTPException(409, str(ReadOnlySplit(file.path)))
    unknown = [v for v in (plan.baseline, plan.candidate) if v not in service.names]
    if unknown:
        raise HTTPException(422, f"unknown variant(s) {unknown}; available: {service.names}")
    try:
        return described(service.canary.rollouts.start(plan))
    except RolloutConflict as conflict:
        raise HTTPException(409, str(conflict)) from None
    except SplitUnavailable as error:
        raise HTTPException(503, str(error), {"Retry-After": "1"}) from None


@router.get("/status")
def status(service: ServiceDep) -> dict[str, Any]:
    """Step, weights, each gate's last verdict with its numbers, every decision, and
    whether its controller is alive (`controller`: alive, stale or done)."""
    state = service.canary.rollouts.status()
    if state is None:
        raise HTTPException(404, "no rollout has been started")
    return described(state)


def described(state: RolloutState) -> dict[str, Any]:
    """The state with its controller's liveness, as of now."""
    now = time.time()
    age = state.heartbeat_age(now)
    return {**state.model_dump(), "controller": state.controller(now), "heartbeat_age_s": age}


def _command(command: Command) -> Any:
    async def send(service: ServiceDep) -> dict[str, Any]:
        # On the event loop: a stale rollout is taken over here, which starts a task.
        try:
            sent = service.canary.rollouts.send(command)
        except RolloutConflict as conflict:
            raise HTTPException(409, str(conflict)) from None
        return {"accepted": sent.command, "id": sent.id}

    send.__doc__ = f"Ask the controller to {command}; it acts within a tick (0.2 s)."
    return send


COMMANDS: tuple[Command, ...] = ("pause", "resume", "abort", "promote")
for _command_name in COMMANDS:
    router.add_api_route(
        f"/{_command_name}", _command(_command_name), methods=["POST"], status_code=202
    )

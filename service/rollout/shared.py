"""The rollout's shared folder: its state, the commands sent to it, every replica's samples.

It sits next to the shared split file, so every replica and worker that follows the split
can answer `GET /rollout/status` and accept pause, resume, abort and promote, whichever
of them the load balancer picks; only the process that runs the controller acts on them.
Writes are atomic (a temporary file renamed over the old one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ValidationError

from service.rollout.plan import RolloutState

Command = Literal["pause", "resume", "abort", "promote"]


class SentCommand(BaseModel):
    id: int
    command: Command


class RolloutFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = path / "samples"
        self._state_file = path / "state.json"
        self._command_file = path / "command.json"

    def read_state(self) -> RolloutState | None:
        try:
            return RolloutState.model_validate_json(self._state_file.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            return None  # written by another version of perfserve: treat as no rollout

    def write_state(self, state: RolloutState) -> None:
        self._write(self._state_file, state.model_dump_json().encode())

    def send(self, command: Command) -> SentCommand:
        sent = SentCommand(id=time.time_ns(), command=command)
        self._write(self._command_file, sent.model_dump_json().encode())
        return sent

    def take_command(self, after: int) -> SentCommand | None:
        """The last command sent, if it is newer than the one with id `after`."""
        try:
            sent = SentCommand.model_validate(orjson.loads(self._command_file.read_bytes()))
        except (FileNotFoundError, orjson.JSONDecodeError, ValidationError):
            return None
        return sent if sent.id > after else None

    def _write(self, path: Path, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` whole: readers see the old content or the new, never a part.

    The temporary name is unique per process and call, so concurrent writers never
    share one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)

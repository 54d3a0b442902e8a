"""The rollout's shared folder: its state, the commands sent to it, every replica's samples.

It sits next to the shared split file, so every replica and worker that follows the split
can answer `GET /rollout/status` and accept pause, resume, abort and promote, whichever
of them the load balancer picks; only the process that runs the controller acts on them.
The state is written atomically (a temporary file renamed over the old one).

Each command is a file of its own in `commands/`, named by a number one higher than the
highest there: the number is taken by an exclusive create (a hard link, which fails if
the name exists), so two replicas sending at once get two numbers and neither command is
lost, and their order does not depend on the hosts' clocks agreeing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ValidationError

from service.rollout.plan import RolloutState

Command = Literal["pause", "resume", "abort", "promote"]
COMMAND_SUFFIX = ".json"


class SentCommand(BaseModel):
    id: int
    """Its number in the folder: commands are applied in rising order."""
    command: Command
    rollout: str
    """Id of the rollout it was sent to; a later rollout never takes it."""


class RolloutFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = path / "samples"
        self.commands = path / "commands"
        self.claims = path / "claims"
        self._state_file = path / "state.json"

    def read_state(self) -> RolloutState | None:
        try:
            return RolloutState.model_validate_json(self._state_file.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            return None  # written by another version of perfserve: treat as no rollout

    def write_state(self, state: RolloutState) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self._state_file, state.model_dump_json().encode())

    def send(self, command: Command, rollout: str) -> SentCommand:
        """Add a command under the next free number; never replaces another one."""
        self.commands.mkdir(parents=True, exist_ok=True)
        number = self.last_command_id() + 1
        while True:
            sent = SentCommand(id=number, command=command, rollout=rollout)
            if create_exclusive(self._command_path(number), sent.model_dump_json().encode()):
                return sent
            number += 1  # another sender took it: try the next

    def commands_after(self, after: int, rollout: str) -> list[SentCommand]:
        """Commands to `rollout` numbered above `after`, in order."""
        taken: list[SentCommand] = []
        for number in self._command_numbers():
            if number <= after:
                continue
            try:
                sent = SentCommand.model_validate(
                    orjson.loads(self._command_path(number).read_bytes())
                )
            except (OSError, orjson.JSONDecodeError, ValidationError):
                continue  # pruned meanwhile, or not one of ours
            if sent.rollout == rollout:
                taken.append(sent)
        return taken

    def last_command_id(self) -> int:
        return max(self._command_numbers(), default=0)

    def prune(self) -> int:
        """Before a new rollout: remove every claim, and every command but the last (which
        keeps the numbering going); the last number, which the new rollout starts after."""
        for claim in self.claims.glob("*") if self.claims.is_dir() else []:
            claim.unlink(missing_ok=True)
        numbers = self._command_numbers()
        last = max(numbers, default=0)
        for number in numbers:
            if number != last:
                self._command_path(number).unlink(missing_ok=True)
        return last

    def claim(self, rollout: str, generation: int) -> bool:
        """Become the controller of `rollout`'s `generation`: True for exactly one caller,
        however many replicas try at once."""
        self.claims.mkdir(parents=True, exist_ok=True)
        return create_exclusive(self.claims / f"{rollout}-{generation}", b"")

    def claim_age(self, rollout: str, generation: int) -> float:
        """Seconds since that claim was made (0 if it is gone)."""
        try:
            return time.time() - (self.claims / f"{rollout}-{generation}").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _command_numbers(self) -> list[int]:
        try:
            names = os.listdir(self.commands)
        except FileNotFoundError:
            return []
        stems = (name.removesuffix(COMMAND_SUFFIX) for name in names)
        return sorted(int(stem) for stem in stems if stem.isdigit())

    def _command_path(self, number: int) -> Path:
        return self.commands / f"{number:012d}{COMMAND_SUFFIX}"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` whole: readers see the old content or the new, never a part.

    The temporary name is unique per process, thread and call, so concurrent writers
    never share one."""
    temporary = _temporary(path)
    temporary.write_bytes(data)
    temporary.replace(path)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` whole, unless it exists: False then. A hard link is
    atomic and refuses an existing name, on local disks and NFS alike."""
    temporary = _temporary(path)
    temporary.write_bytes(data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _temporary(path: Path) -> Path:
    unique = f"{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
    return path.with_name(f".{path.name}.{unique}.tmp")

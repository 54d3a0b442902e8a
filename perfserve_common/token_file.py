"""The admin token kept in a file, as `perfserve serve` and `perfserve rollout` read it.

A file is how a secret should reach a process (an environment variable is inherited by
every child, a command line is visible to every local user), but only if other users
cannot read the file: a token file with any group or other permission is warned about,
and a secret this project makes (`perfserve staging up`) is created readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path

from perfserve_common.usage import UsageError

OPEN_BITS = 0o077
"""Permission bits that let someone other than the owner read or change the file."""


def read_token_file(path: Path) -> str:
    """The token in `path`, surrounding whitespace ignored; raises OSError."""
    return path.read_text().strip()


def open_permissions(path: Path) -> str | None:
    """A warning when users other than the owner may read or change `path`, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # reading it reports the problem
    if mode & OPEN_BITS == 0:
        return None
    return (
        f"the admin token file {path} can be read by other users (mode {mode:04o}); "
        f"chmod 600 {path}"
    )


def client_admin_token(path: Path | None, program: str) -> str:
    """The token a client command (`perfserve rollout`, a split change) sends: from the
    file `--admin-token-file` names (which also reads PERFSERVE_ADMIN_TOKEN_FILE, a mounted
    secret), or from PERFSERVE_ADMIN_TOKEN; one of the two, as `perfserve serve` takes it.
    A file others can read is warned about on stderr."""
    from_environment = os.environ.get("PERFSERVE_ADMIN_TOKEN", "").strip()
    if path is None:
        if not from_environment:
            raise UsageError(
                "set PERFSERVE_ADMIN_TOKEN or --admin-token-file to the service's admin token"
            )
        return from_environment
    if from_environment:
        raise UsageError("--admin-token-file: give it or PERFSERVE_ADMIN_TOKEN, not both")
    try:
        token = read_token_file(path)
    except OSError as error:
        raise UsageError(f"--admin-token-file {path}: {error.strerror}") from None
    if not token:
        raise UsageError(f"--admin-token-file {path}: the file is empty")
    if warning := open_permissions(path):
        print(f"{program}: warning: {warning}", file=sys.stderr)
    return token


def new_secret_file(path: Path) -> Path:
    """A fresh random secret in `path`, a file only its owner may read (mode 0600 from
    its creation, so the secret is never readable by others even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(16) + "\n")
    return path

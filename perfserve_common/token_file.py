"""The admin token kept in a file, as `perfserve serve` and `perfserve rollout` read it.

A file is how a secret should reach a process (an environment variable is inherited by
every child, a command line is visible to every local user), but only if other users
cannot read the file: a token file with any group or other permission is warned about.
"""

from __future__ import annotations

import stat
from pathlib import Path

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

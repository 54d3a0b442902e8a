"""What a `perfserve` command's exit status means: the same for every subcommand, so a CI
step or a script can branch on it without knowing which command ran."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    ANSWERED = 0
    """The command ran and its answer is yes, or it had no question to answer."""
    NO = 1
    """The answer is "no": a rejected candidate, a rolled-back rollout, an SLO missed
    with `--fail-on-miss`, a regression with `--fail-on-regression`."""
    USAGE = 2
    """The command was called wrongly: an option, its value or a file it names."""
    INCONCLUSIVE = 3
    """No answer yet: a paused rollout, or a run whose machine moved too much to tell."""
    ENVIRONMENT = 4
    """Something the command needs is missing here: an install extra or a tool."""

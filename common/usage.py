"""Pieces every `perfserve` subcommand shares: options that also read `PERFSERVE_*`."""

from __future__ import annotations

import argparse
import os
from typing import Any


class UsageError(Exception):
    """A mistake in how a command was called; printed as one line, exit code 2."""


def env_name(flag: str) -> str:
    return "PERFSERVE_" + flag.lstrip("-").replace("-", "_").upper()


def add_option(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """An option whose default comes from `PERFSERVE_<OPTION>` when that is set."""
    from_env = os.environ.get(env_name(flag))
    if from_env is not None:
        kwargs["default"] = kwargs.get("type", str)(from_env)
        kwargs.pop("required", None)
    help_text = kwargs.get("help", "")
    kwargs["help"] = f"{help_text} [env {env_name(flag)}]".strip()
    parser.add_argument(flag, **kwargs)

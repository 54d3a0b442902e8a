"""Pieces every `perfserve` subcommand shares: options that also read `PERFSERVE_*`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class UsageError(Exception):
    """A mistake in how a command was called; printed as one line, exit code 2."""


class MissingTool(Exception):
    """A tool or package the command needs is not on this machine; printed as one line
    that says what to install, exit code 4."""


def env_name(flag: str) -> str:
    return "PERFSERVE_" + flag.lstrip("-").replace("-", "_").upper()


def add_option(
    parser: argparse.ArgumentParser, flag: str, *, renamed_from: str | None = None, **kwargs: Any
) -> None:
    """An option whose default comes from `PERFSERVE_<OPTION>` when that is set; a bad
    value there is a UsageError that names the variable, as a bad flag names the flag.

    `renamed_from` keeps an option's old spelling working for one release: it is hidden
    from the help, and using it prints a line that names the new one."""
    from_env = os.environ.get(env_name(flag))
    if from_env is not None:
        kwargs["default"] = _from_env(flag, from_env, kwargs)
        kwargs.pop("required", None)
    action = parser.add_argument(flag, **kwargs)
    setattr(action, "env_var", env_name(flag))  # noqa: B010  (HelpFormatter shows it)
    if renamed_from is not None:
        same: dict[str, Any] = {
            "nargs": action.nargs,
            "type": action.type,
            "choices": action.choices,
        }
        parser.add_argument(
            renamed_from,
            action=_RenamedOption,
            target=action,
            dest=action.dest,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **{key: value for key, value in same.items() if value is not None},
        )


class _RenamedOption(argparse.Action):
    """An old spelling: warns, then does what the option under its new name does."""

    def __init__(self, *args: Any, target: argparse.Action, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        new = self.target.option_strings[0]
        print(
            f"{parser.prog}: warning: {option_string} is now {new}; "
            "the old spelling will be removed in the next release",
            file=sys.stderr,
        )
        self.target(parser, namespace, values, new)


def _from_env(flag: str, text: str, kwargs: dict[str, Any]) -> Any:
    kind = kwargs.get("type", str)
    try:
        value = kind(text)
    except (ValueError, argparse.ArgumentTypeError) as error:
        reason = {int: "an integer", float: "a number"}.get(kind)
        reason = f"must be {reason}" if reason else str(error)
        raise UsageError(f"{env_name(flag)}={text!r} is not a valid {flag}: {reason}") from None
    choices = kwargs.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(map(str, choices))
        raise UsageError(f"{env_name(flag)}={text!r}: {flag} must be one of {allowed}")
    return value


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, where it has one, and the environment
    variable it also reads (options made with `add_option`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        notes = []
        default = action.default
        if action.option_strings and default not in (None, False, {}, argparse.SUPPRESS):
            notes.append("default: %(default)s")
        if env := getattr(action, "env_var", None):
            notes.append(f"env {env}")
        if not notes:
            return action.help
        return f"{action.help or ''} ({'; '.join(notes)})".strip()


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The same, for a command whose description is laid out by hand."""


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def validation_message(error: ValidationError, label: Callable[[str], str] = flag_name) -> str:
    """A pydantic error as one line per problem, joined: which option, the bad value
    (never a secret's), and what is allowed, without pydantic's documentation links."""
    parts = []
    for problem in error.errors(include_url=False):
        message = str(problem["msg"]).removeprefix("Value error, ")
        message = message[0].lower() + message[1:] if message else message
        if not problem["loc"]:
            parts.append(message)
            continue
        name, *inside = (str(part) for part in problem["loc"])
        where = ".".join([label(name), *inside])
        shown = "" if _secret(name) else f" {str(problem['input'])!r}"
        parts.append(f"{where}{shown}: {message}")
    return "; ".join(parts)


def _secret(name: str) -> bool:
    return any(word in name for word in ("token", "password", "secret"))
    path = os.environ.get("PERFSERVE_ADMIN_TOKEN_FILE", "").strip()
    if not path:
        raise UsageError(
            "set PERFSERVE_ADMIN_TOKEN, or PERFSERVE_ADMIN_TOKEN_FILE to a file holding "
            "the service's admin token"
        )
    try:
        with open(path) as file:
            token = file.read().strip()
    except OSError as error:
        raise UsageError(f"PERFSERVE_ADMIN_TOKEN_FILE {path}: {error.strerror}") from None
    if not token:
        raise UsageError(f"PERFSERVE_ADMIN_TOKEN_FILE {path} is empty")
    return token

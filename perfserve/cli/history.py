"""`perfserve history`: list recorded bench and compare results, or accept one as the baseline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from perfserve.benchmarks.offline.options import (
    DEFAULT_HISTORY,
)
from perfserve_common.usage import UsageError, add_option

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_arguments(history: argparse.ArgumentParser) -> None:
    history.description = (
        "List every recorded bench and compare run of this folder, with why a run is not "
        "accepted (a regression against the last accepted run on the same machine, or a "
        "rejected promotion); `accept ID` makes a run the baseline later runs are held to."
    )
    add_option(
        history,
        "--history",
        type=Path,
        default=DEFAULT_HISTORY,
        help="Folder the bench and compare commands record into.",
    )
    history.add_argument(
        "action",
        nargs="?",
        choices=["list", "accept"],
        default="list",
        help="list the records (the default), or accept one.",
    )
    history.add_argument("record", nargs="?", help="The record id to accept, as listed.")
    history.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from perfserve.benchmarks.gate import history

    if args.action == "accept":
        if not args.record:
            raise UsageError("accept needs a record id (see `perfserve history`)")
        found = history.accept(args.history, args.record)
        print(f"accepted {found.id}: later runs on this machine are checked against it")
        return 0
    recorded = history.records(args.history)
    if not recorded:
        print(f"no records in {args.history}: `perfserve bench` and `compare` record there")
        return 0
    print(history.describe(recorded))
    return 0

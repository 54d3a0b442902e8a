"""The sweep's exit code with `--fail-on-miss`, from summary.json's contents.

Exit codes mean the same in every command (docs/KNEES.md): 0 the answer is yes, 1 it is
no, 3 the run cannot tell. For a sweep: 1 when the server missed the SLO (or fell short,
saturated) at a rate asked for with `--rates`, or held none of the rates its search
tried; 3 when the run was not conclusive (its machine moved more than its knees'
intervals), or when a rate it needed gave no answer of the server's (the generator fell
behind, or the step never settled).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

SERVERS_MISS = ("misses-slo", "server-saturated")


class Exit(IntEnum):
    ANSWERED = 0
    NO = 1
    INCONCLUSIVE = 3


def sweep_exit(document: dict[str, Any], fail_on_miss: bool) -> Exit:
    """The exit code for a sweep's summary: always 0 without `fail_on_miss`."""
    if not fail_on_miss:
        return Exit.ANSWERED
    if not document.get("conclusive", True):
        return Exit.INCONCLUSIVE
    fixed = document["settings"]["rates"] != "auto"
    untold = False
    for target in document["variants"].values():
        steps = [s for s in target["steps"] if s["phase"] == "sweep"]
        failed = fixed or target["knee_qps"] is None
        if not failed or not steps:
            continue
        if any(s["verdict"] in SERVERS_MISS for s in steps):
            return Exit.NO
        untold |= any(s["verdict"] != "holds" for s in steps) or target["knee_qps"] is None
    return Exit.INCONCLUSIVE if untold else Exit.ANSWERED

"""`running_on`: a load generator's controller kept on the generators' cores for a block."""

from __future__ import annotations

import os
import subprocess
import sys

from perfserve_common.processes import running_on


def test_a_block_runs_on_the_cpus_asked_and_its_thread_gets_its_cpus_back() -> None:
    allowed = os.sched_getaffinity(0)
    last = max(allowed)
    with running_on([last]):
        assert os.sched_getaffinity(0) == {last}
        started = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert started.stdout.strip() == f"[{last}]"  # what it starts runs there too
    assert os.sched_getaffinity(0) == allowed


def test_no_cpus_or_cpus_not_allowed_change_nothing() -> None:
    allowed = os.sched_getaffinity(0)
    for cpus in (None, [], [max(allowed) + 64]):
        with running_on(cpus):
            assert os.sched_getaffinity(0) == allowed

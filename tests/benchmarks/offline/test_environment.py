"""Pinning is reported and undone; the fingerprint is stable on one machine."""

from __future__ import annotations

import os

import pytest
import threadpoolctl

from perfserve.benchmarks.offline.environment import (
    machine_description,
    machine_fingerprint,
    pinned,
)
from perfserve_common.machine import code_revision


def test_pinning_applies_inside_the_block_and_is_restored_after() -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    with pinned(1, [cpu]) as report:
        assert os.sched_getaffinity(0) == {cpu}
        assert report["cpu_affinity"] == [cpu] and report["cpus_pinned"]
        assert all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info())
    assert os.sched_getaffinity(0) == before


@pytest.mark.integration
def test_fingerprint_and_revision_identify_the_run() -> None:
    description = machine_description()
    assert machine_fingerprint(description) == machine_fingerprint()
    assert len(machine_fingerprint()) == 12
    assert machine_fingerprint(description | {"logical_cpus": 999}) != machine_fingerprint()
    revision = code_revision()
    assert len(revision.removesuffix("+dirty")) == 40 or revision.startswith("perfserve-")

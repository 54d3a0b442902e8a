"""`python -m perfserve.benchmarks.http.gc_cost`: the collector's cost per request at
several thresholds, side by side."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from perfserve.benchmarks.http.gc_cost import main


def test_each_threshold_is_measured_at_each_concurrency(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thresholds = gc.get_threshold()
    try:
        main(["--store", str(store), "--thresholds", "700,10000000", "--concurrency", "8,200",
              "--requests", "600", "--rounds", "2"])  # fmt: skip
    finally:
        gc.set_threshold(*thresholds)
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ") for line in lines if "|" in line}
    for concurrency in ("8", "200"):
        often, never = rows["| 700", concurrency], rows["| 10,000,000", concurrency]
        assert never[5] == "0.0, 0.0, 0.0"  # 600 requests allocate far fewer objects
        assert often[-1] == never[-1] == "0 |"  # every request answered
    # 200 requests arriving at once hold more than 700 new objects: a collection at least
    backlog = rows["| 700", "200"]
    assert float(backlog[5].split(",")[0]) > 0
    assert lines[-1].startswith("load average")

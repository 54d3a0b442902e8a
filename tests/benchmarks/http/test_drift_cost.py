"""`python -m perfserve.benchmarks.http.drift_cost`: the CPU time drift costs per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.http.drift_cost import main, measure


def test_it_measures_both_shares_and_says_what(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    observe, loop = measure(store, rows=2000, runs=3)
    assert 0 < observe < 100_000 and 0 < loop < 100_000  # nanoseconds, on any machine
    main(["--store", str(store), "--rows", "2000", "--runs", "1"])
    assert "ns per single-row request" in capsys.readouterr().out

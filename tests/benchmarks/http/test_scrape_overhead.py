"""`python -m perfserve.benchmarks.http.scrape_overhead`: one step per side, each with its
own real Prometheus, tiny; and its command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfserve.benchmarks.http.scrape_overhead import SIDES, parser, render, run
from tests.utils import require_tool


@pytest.mark.integration
def test_each_side_runs_a_step_with_its_own_prometheus(store: Path) -> None:
    require_tool("prometheus")
    cpus = sorted(os.sched_getaffinity(0))
    options = ["--store", str(store), "--knee-qps", "200", "--rounds", "1", "--seconds", "2"]
    options += ["--server-cpus", str(cpus[0]), "--generator-cpus", str(cpus[-1])]
    args = parser().parse_args(options)
    readings, knee = run(args)
    assert knee == 200 and list(readings) == list(SIDES)
    for side, (reading,) in readings.items():
        assert reading["achieved"] > 0 and reading["failed"] == 0, side
        assert reading["client_p99"] > 0 and reading["failed_scrapes"] == 0, side
    # Prometheus scraped the server during the step only on the sides that scrape it.
    assert readings["no scrapes"][0]["scrapes"] == 0
    assert readings["every 1 s"][0]["scrapes"] >= 1
    report = render(readings, knee, args)
    assert "offered 140/s (70%)" in report
    assert "p99 scraped every 1 s over no scrapes: " in report
    assert "p99 scraped every 15 s over no scrapes: " in report


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--share", "1.5"], "argument --share: must be a share of the knee, at most 1"),
        (["--rounds", "0"], "argument --rounds: must be 1 or more"),
        (["--server-cpus", "x"], "argument --server-cpus: CPUs must look like"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(arguments)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err

"""`perfserve bench-http --workers`: one server per worker count, measured in turns, and
what the CPU per request says N workers should hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfserve.benchmarks.http.workers import WorkersCell, on_paper, run_workers_benchmark
from perfserve.cli import main
from tests.utils import require_tool


@pytest.mark.integration
def test_one_and_two_workers_are_measured_in_turns_and_put_on_paper(
    store: Path, tmp_path: Path
) -> None:
    require_tool("wrk")
    cells = run_workers_benchmark(
        store, tmp_path, workers=[1, 2], concurrencies=[8], seconds=1, rounds=1,
        server_cpus="0", generator_cpus="0", variant="onnx_int8",
    )  # fmt: skip
    assert [cell.workers for cell in cells] == [1, 2]
    for cell in cells:
        assert cell.rps[0] > 0 and cell.failed == 0
        # Two workers' CPU is the sum over the server's processes: both are counted.
        assert cell.cpu_us[0] > 0 and cell.generator_us[0] > 0
    assert len(json.loads((tmp_path / "workers.json").read_text())) == 2
    report = (tmp_path / "workers.md").read_text()
    # wrk shared the server's core: each row's budget counts both costs out of one core.
    for cell in cells:
        budget = 1e6 / (cell.cpu_us[0] + cell.generator_us[0])
        assert f"| {cell.workers} | 8 | {cell.rps[0]:,.0f} | {budget:,.0f} |" in report
    two = cells[1]
    assert f"| 4 | {4 * 1e6 / two.cpu_us[0]:,.0f} |" in report


def test_on_paper_each_row_has_its_own_budget_and_the_most_workers_scale() -> None:
    one = WorkersCell("1 workers", 64, rps=[9_000], cpu_us=[100.0], workers=1, generator_us=[20.0])
    two = WorkersCell("2 workers", 64, rps=[19_000], cpu_us=[80.0], workers=2, generator_us=[10.0])
    lines = on_paper([one, two], cores=2, shared=False)
    # One worker holds at most its one core; two are held by theirs.
    assert "| 1 | 64 | 9,000 | 10,000 | 90% |" in lines
    assert "| 2 | 64 | 19,000 | 25,000 | 76% |" in lines
    # The projection scales the cost measured with the most workers.
    assert "| 4 | 50,000 |" in lines
    assert any(line.startswith("Assumed: a worker costs per request") for line in lines)
    # With wrk on the same cores, each request pays both costs out of them.
    shared = on_paper([one, two], cores=2, shared=True)
    assert "| 2 | 64 | 19,000 | 22,222 | 86% |" in shared


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0,1"], "--workers [0, 1]: worker counts must be 1 or more"),
        (["--workers", "1,2", "--variants", "a,b"], "--workers measures one variant"),
        (["--workers", "1", "--server-cpus", "x"], "--server-cpus: CPUs must look like"),
    ],
)
def test_bad_workers_options_are_usage_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench-http", *arguments]) == 2
    assert message in capsys.readouterr().err

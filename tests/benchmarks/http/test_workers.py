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
    one = cells[0]
    two_cores = 2 * 1e6 / one.cpu_us[0]
    assert f"| 2 | {two_cores:,.0f} |" in report
    # wrk shared the server's core: the ceiling counts both costs out of one core.
    shared = 1e6 / (one.cpu_us[0] + one.generator_us[0])
    assert f"out of 1 core(s): at most {shared:,.0f} req/s" in report


def test_on_paper_scales_one_workers_cost_and_says_what_it_assumes() -> None:
    cell = WorkersCell("1 workers", 64, rps=[9_000], cpu_us=[100.0], workers=1, generator_us=[20.0])
    lines = on_paper([cell], cores=2, shared=False)
    assert "| 4 | 40,000 |" in lines
    assert not any("shares the server's cores" in line for line in lines)
    assert any(line.startswith("Assumed: every worker costs per request") for line in lines)


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

"""`perfserve bench-http` end to end, kept tiny: it runs, measures and writes its table."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from perfserve.benchmarks.http.http_overhead import Cell, paired_ratio, run_benchmark
from perfserve.cli import main
from tests.utils import require_tool

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.mark.integration
def test_bench_http_measures_floor_variant_and_a_competitor(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("wrk")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    cells = run_benchmark(
        store,
        tmp_path,
        concurrencies=[4],
        seconds=1,
        rounds=1,
        server_cpu="0",
        client_cpu="1",
        variants=["onnx_int8"],
        competitors={"naive-fastapi": sys.executable},
        baseline=REPOSITORY,
    )
    targets = {cell.target for cell in cells}
    assert targets == {
        "bare ASGI floor",
        "onnx_int8 batching on",
        "onnx_int8 batching off",
        "onnx_int8 batching on (baseline)",
        "onnx_int8 batching off (baseline)",
        "naive-fastapi (onnx_int8)",
    }
    assert all(cell.rps[0] > 0 and cell.failed == 0 for cell in cells)
    batched = next(c for c in cells if c.target == "onnx_int8 batching on")
    assert batched.mean_batch and batched.mean_batch[0] >= 1
    saved = json.loads((tmp_path / "bench-http.json").read_text())
    assert len(saved) == 6
    table = (tmp_path / "bench-http.md").read_text()
    assert "| onnx_int8 | 4 |" in table and "perfserve req/s over theirs" in table
    assert "| onnx_int8 batching off | 4 |" in table.split("req/s over baseline")[1]
    assert list(temporary.iterdir()) == []  # its wrk scripts and servers' folders are gone


def test_ratios_pair_the_cells_of_one_round() -> None:
    # The host ran at half speed in the second round: both cells moved with it, and the
    # table gives the median of each round's own ratio, with their range.
    native = Cell("onnx_int8 batching on", 64, rps=[20_000, 10_000, 19_000])
    v2 = Cell("onnx_int8 batching on v2", 64, rps=[18_000, 9_500, 17_100])
    assert paired_ratio(v2, native) == "0.90x (0.90 to 0.95)"
    assert paired_ratio(Cell("a", 1, rps=[5.0]), Cell("b", 1, rps=[10.0])) == "0.50x"


def test_a_malformed_concurrency_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench-http", "--concurrency", "1,x"])
    assert exited.value.code == 2
    assert "'1,x' is not a comma-separated list of integers" in capsys.readouterr().err


def test_a_baseline_that_is_not_a_checkout_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench-http", "--baseline", str(tmp_path)]) == 2
    assert f"--baseline: {tmp_path} is not a checkout of perfserve" in capsys.readouterr().err


@pytest.mark.integration
def test_bench_http_measures_v2_beside_predict_on_the_same_servers(
    store: Path, tmp_path: Path
) -> None:
    require_tool("wrk")
    cells = run_benchmark(
        store,
        tmp_path,
        concurrencies=[4],
        seconds=1,
        rounds=1,
        server_cpu="0",
        client_cpu="1",
        variants=["onnx_int8"],
        competitors={},
        protocols=("v2",),
    )
    by_target = {cell.target: cell for cell in cells}
    assert {"onnx_int8 batching on v2", "onnx_int8 batching off v2"} <= set(by_target)
    v2 = by_target["onnx_int8 batching on v2"]
    assert v2.rps[0] > 0 and v2.failed == 0 and v2.mean_batch  # answered, by the batcher
    table = (tmp_path / "bench-http.md").read_text()
    assert "| onnx_int8 batching on v2 | 4 |" in table.split("req/s over /predict")[1]


@pytest.mark.parametrize(
    ("given", "message"),
    [("v3", "'v3'; allowed: perfserve, v1, v2"), ("perfserve", "/predict is always measured")],
)
def test_an_unknown_protocol_is_a_usage_error(
    given: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench-http", "--protocols", given])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err

"""`perfserve bench-overload` end to end, kept tiny, and how it reads a k6 summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfserve.benchmarks.overload.overload import Case, parse_case
from perfserve.benchmarks.overload.overload_load import KINDS, PHASES
from perfserve.cli import main
from tests.utils import require_tool


@pytest.mark.integration
def test_bench_overload_counts_every_answer_and_prices_a_refusal(
    store: Path, tmp_path: Path
) -> None:
    require_tool("wrk")
    require_tool("k6")
    options = ["--store", str(store), "--out", str(tmp_path), "--case", "onnx_int8"]
    options += ["--seconds", "1", "--rounds", "1", "--vus", "50", "--max-queue", "8"]
    options += ["--quiet-seconds", "1", "--overload-seconds", "2", "--after-seconds", "2"]
    assert main(["bench-overload", *options]) == 0
    (outcome,) = json.loads((tmp_path / "bench-overload.json").read_text())
    assert outcome["case"] == "onnx_int8 max batch 64"
    assert outcome["capacity_rps"] > 0
    assert set(outcome["counts"]) == set(PHASES)
    assert all(set(counts) == set(KINDS) for counts in outcome["counts"].values())
    assert all(counts["ok"] > 0 for counts in outcome["counts"].values())
    # The service refuses only with 503 and Retry-After, whatever k6 offered.
    assert all(
        counts["refused_without_retry_after"] == counts["other_5xx"] == 0
        for counts in outcome["counts"].values()
    )
    assert len(outcome["p99_after_ms"]) == 2
    assert set(outcome["refusal_cpu_us"]) == {"bare ASGI floor (200)", "this checkout (503)"}
    assert all(cost > 0 for cost in outcome["refusal_cpu_us"].values())
    assert "| onnx_int8 max batch 64 |" in (tmp_path / "bench-overload.md").read_text()


@pytest.mark.integration
def test_h2load_offers_the_phases_and_its_log_is_counted_alike(store: Path, tmp_path: Path) -> None:
    require_tool("wrk")
    require_tool("h2load")
    options = ["--store", str(store), "--out", str(tmp_path), "--generator", "h2load"]
    options += ["--case", "onnx_int8", "--case", "onnx_fp32", "--seconds", "1", "--rounds", "1"]
    options += ["--repeats", "2"]
    options += ["--vus", "50", "--max-queue", "8", "--quiet-seconds", "1"]
    options += ["--overload-seconds", "2", "--after-seconds", "2"]
    assert main(["bench-overload", *options]) == 0
    outcomes = json.loads((tmp_path / "bench-overload.json").read_text())
    assert [(o["case"], o["run"]) for o in outcomes] == [
        (f"{variant} max batch 64", run) for variant in ("onnx_int8", "onnx_fp32") for run in (1, 2)
    ]
    for outcome in outcomes:
        counts = outcome["counts"]
        assert all(counts[phase]["ok"] > 0 for phase in PHASES)
        assert all(counts[phase]["other_5xx"] == counts[phase]["other"] == 0 for phase in PHASES)
        assert all(counts[phase]["connection_error"] == 0 for phase in PHASES)
        assert counts["overload"]["refused"] > 0  # 50 connections against a queue of 8
        assert outcome["goodput_rps"] == counts["overload"]["ok"] / 2
        # Each case counts its own answers only: no more than its half-capacity second sent.
        assert sum(counts["before"].values()) <= outcome["capacity_rps"] / 2 * 1.1 + 64
        assert len(outcome["p99_after_ms"]) == 2
    report = (tmp_path / "bench-overload.md").read_text()
    assert "503 (headers unseen)" in report
    assert "| onnx_int8 max batch 64, run 2 |" in report
    assert "| onnx_fp32 max batch 64 | 2 |" in report  # the median of its two runs


@pytest.mark.integration
def test_a_balancer_that_sheds_refuses_with_retry_after_too(store: Path, tmp_path: Path) -> None:
    for tool in ("wrk", "k6", "nginx"):
        require_tool(tool)
    options = ["--store", str(store), "--out", str(tmp_path), "--case", "onnx_int8"]
    options += ["--load-balancer", "nginx+limit-conn", "--seconds", "1", "--rounds", "1"]
    options += ["--vus", "200", "--quiet-seconds", "1", "--overload-seconds", "2"]
    options += ["--after-seconds", "2"]
    assert main(["bench-overload", *options]) == 0
    (outcome,) = json.loads((tmp_path / "bench-overload.json").read_text())
    assert outcome["case"] == "onnx_int8 max batch 64 via nginx+limit-conn"
    counts = outcome["counts"]
    assert all(counts[phase]["ok"] > 0 for phase in PHASES)
    # 200 connections against nginx's 64: the excess is nginx's 503, with Retry-After.
    assert counts["overload"]["refused"] > 0
    assert all(
        counts[phase]["refused_without_retry_after"] == counts[phase]["other_5xx"] == 0
        for phase in PHASES
    )


def test_a_case_names_a_variant_and_optionally_its_batch_size() -> None:
    assert parse_case("sklearn_fp32:1") == Case("sklearn_fp32", 1)
    assert parse_case("onnx_int8") == Case("onnx_int8", 64)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--case", "onnx_int8:x"], "'onnx_int8:x': expected VARIANT or VARIANT:MAX_BATCH_SIZE"),
        (["--factor", "0"], "--factor: must be above 0"),
    ],
)
def test_bad_options_are_usage_errors(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench-overload", *options])
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_the_overload_can_be_measured_against_the_knee(store: Path, tmp_path: Path) -> None:
    require_tool("wrk")
    require_tool("h2load")
    options = ["--store", str(store), "--out", str(tmp_path), "--generator", "h2load"]
    options += ["--case", "sklearn_fp32:1", "--capacity", "knee", "--slo-p99-ms", "250"]
    options += ["--seconds", "1", "--rounds", "1", "--vus", "50", "--quiet-seconds", "1"]
    options += ["--overload-seconds", "2", "--after-seconds", "2"]
    assert main(["bench-overload", *options]) == 0
    (outcome,) = json.loads((tmp_path / "bench-overload.json").read_text())
    assert outcome["capacity_from"].startswith("knee at p99 <= 250 ms (")
    assert outcome["capacity_rps"] >= 500  # the search's first rate held
    assert outcome["offered_rps"] == pytest.approx(3 * outcome["capacity_rps"])
    assert outcome["counts"]["overload"]["ok"] > 0
    assert "| knee at p99 <= 250 ms (" in (tmp_path / "bench-overload.md").read_text()

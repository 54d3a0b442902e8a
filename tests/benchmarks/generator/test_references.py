"""The reference generators the sweep is checked against: openloop, built from its C
source and run against a real server, and the rule by which their steps hold; and the
instant server under the wire row."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from perfserve.benchmarks.generator.generator_bench import measure_wire
from perfserve.benchmarks.generator.knee_check import _first_cpu, _median, _ratio, holds
from perfserve.benchmarks.generator.references import (
    build_instant,
    build_openloop,
    run_openloop,
    running_instant,
)
from perfserve.cli import main
from perfserve_common.processes import running_server
from tests.utils import require_tool

A_STEP = {"sent_qps": 1000.0, "dropped": 0, "late_share": 0.0, "failed": 0, "p99_ms": 10.0}


def test_a_step_holds_only_when_the_generator_kept_its_rate_and_the_server_its_slo() -> None:
    assert holds(A_STEP, 1000.0, slo_ms=25.0)
    assert holds({**A_STEP, "late_share": None}, 1000.0, slo_ms=25.0)  # k6 cannot tell
    assert not holds(A_STEP, 1000.0, slo_ms=5.0)
    assert not holds({**A_STEP, "sent_qps": 900.0}, 1000.0, slo_ms=25.0)
    assert not holds({**A_STEP, "late_share": 0.05}, 1000.0, slo_ms=25.0)
    assert not holds({**A_STEP, "dropped": 3}, 1000.0, slo_ms=25.0)
    assert not holds({**A_STEP, "failed": 1}, 1000.0, slo_ms=25.0)


def test_the_core_read_is_the_first_of_a_taskset_list() -> None:
    assert [_first_cpu(text) for text in ("0", "1,3", "2-3", "")] == [0, 1, 2, None]


def test_a_knee_that_is_only_a_bound_keeps_its_sign_through_ratios_and_medians() -> None:
    assert _ratio((8000.0, False), (7500.0, False)) == "1.07"
    assert _ratio((8000.0, True), (7500.0, False)) == "≥ 1.07"  # the sweep could hold more
    assert _ratio((8000.0, False), (8000.0, True)) == "≤ 1.00"
    assert _ratio((8000.0, True), (8000.0, True)) == "-"
    assert _median([(7000.0, False), (8000.0, True), (9000.0, False)]) == (8000.0, True)
    assert _median([(7000.0, False), (9000.0, False)]) == (8000.0, False)


@pytest.mark.integration
def test_openloop_offers_its_rate_and_times_every_answer(store: Path, tmp_path: Path) -> None:
    require_tool("cc")
    binary = build_openloop(tmp_path)
    with running_server(store) as server:
        step = run_openloop(binary, server.url, store, "onnx_int8", 400.0, 2.0, cpu="0")
        refused = run_openloop(binary, server.url, store, "no_such", 100.0, 1.0, cpu="0")
    assert step["sent_qps"] == pytest.approx(400.0, rel=0.05)
    assert step["failed"] == step["dropped"] == 0
    assert 0 < step["p50_ms"] <= step["p99_ms"] < 1000
    # Latency from schedule holds the server's own time and what is outside it.
    assert 0 < step["outside_p50_ms"] < step["p50_ms"]
    assert refused["failed"] == 100  # every 404 counted, none timed
    assert refused["p99_ms"] != refused["p99_ms"]  # NaN: no answer to time


@pytest.mark.integration
def test_the_instant_server_answers_at_once_and_says_it_spent_nothing(tmp_path: Path) -> None:
    require_tool("cc")
    with running_instant(build_instant(tmp_path), cpu="0") as url, httpx.Client() as client:
        answers = [client.post(f"{url}/any/path", json={"instances": [[1.0]]}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[-1].headers["server-timing"] == "total;dur=0"
    assert answers[-1].json() == {}


@pytest.mark.integration
def test_the_wire_row_is_all_outside_the_server(store: Path, tmp_path: Path) -> None:
    require_tool("cc")
    binaries = (build_openloop(tmp_path), build_instant(tmp_path))
    wire = measure_wire(*binaries, store, rate=500.0, seconds=1.0, cpus=("0", "0"))
    assert wire["sent_qps"] == pytest.approx(500.0, rel=0.05)
    assert wire["failed"] == 0
    # The server's total is zero, so everything it took is what the wire added.
    assert wire["outside_p50_ms"] == wire["p50_ms"] > 0


@pytest.mark.integration
def test_the_sweep_knee_is_set_beside_openloops(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("cc")
    options = ["--store", str(store), "--variant", "sklearn_fp32", "--openloop", "--rounds", "0"]
    options += ["--knee-slo-ms", "200", "--knee-seconds", "2", "--knee-start-rate", "100"]
    options += ["--knee-max-rate", "400", "--server-cpus", "0", "--generator-cpus", "0"]
    assert main(["bench-generator", *options]) == 0
    knee = capsys.readouterr().out
    assert "knee of sklearn_fp32 at p99 <= 200 ms, constant arrivals:" in knee
    # Both searches end at the top rate, which a server with headroom holds: two bounds,
    # whose ratio says nothing.
    assert "native sweep ≥ 400/s (limited by max-rate)" in knee
    assert "openloop bisection ≥ 400/s, native / openloop -" in knee
    # The server's core, read before and after each side; one of the four is the fastest.
    speeds = knee.split("core speed before → after, of the round's fastest: ")[1].splitlines()[0]
    sides = dict(side.split(" ", 1) for side in speeds.split(", "))
    readings = [float(v) for text in sides.values() for v in text.split(" → ")]
    assert set(sides) == {"sweep", "references"} and len(readings) == 4
    assert max(readings) == 1.0 and min(readings) > 0

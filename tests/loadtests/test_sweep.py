"""`perfserve sweep` against real servers on loopback: open-loop rate, reconciliation with
the server, coordinated omission corrected, the knee, stress and soak, distributed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.engines.base import ENGINES
from perfserve_common.processes import ServerProcess, running_server
from tests.utils import run_perfserve

pytestmark = pytest.mark.integration  # real servers under generated load

SLOW = ["--inference", "thread", "--max-batch-size", "1"]


def sweep(url: str, store: Path, out: Path, *args: str) -> dict[str, Any]:
    """Run a sweep to completion; its summary.json."""
    done = run_perfserve(
        "sweep", "--url", url, "--store", str(store), "--out", str(out),
        "--metrics-port", "0", *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


@pytest.mark.parametrize("engine", ENGINES)
def test_open_loop_rate_and_the_server_side_add_up(
    server: ServerProcess, store: Path, tmp_path: Path, engine: str
) -> None:
    summary = sweep(
        server.url, store, tmp_path, "--variants", "onnx_int8", "--rates", "200",
        "--arrivals", "constant", "--step-seconds", "4", "--window-seconds", "1",
        "--slo-p99-ms", "500", "--engine", engine,
    )  # fmt: skip
    step = summary["variants"]["onnx_int8"]["steps"][0]
    assert summary["settings"]["engine"] == engine
    # Within 10%: on a busy 2-core machine a late window's sends land in the next one.
    assert abs(step["sent_qps"] - 200) <= 200 * 0.10
    assert abs(step["achieved_qps"] - 200) <= 200 * 0.10
    # The server's own time is inside the client's: what is left is the wire and both
    # HTTP stacks and the generator, a fraction of the latency from schedule.
    assert 0 < step["outside_p50_ms"] <= step["p50_ms"]
    # Every request the generator sent, the server counted, and the other way round.
    assert step["server_requests"] == step["requests"] == step["ok"]
    assert step["answered_by"] == {"onnx_int8": step["ok"]}
    assert step["server_mean_batch_rows"] >= 1
    assert 0 < step["server_utilization"] < 1
    assert step["p50_ms"] <= step["p99_ms"] <= step["p999_ms"] <= step["max_ms"]
    assert summary["slo_p99_ms"] == 500
    # The server's core was read before the step; the one reading is the run's fastest.
    assert step["core_rate"] > 0 and step["core_speed"] == 1.0
    core = summary["conditions"]["core_speed"]
    assert core["cpu"] in summary["conditions"]["server_cpus"]
    # The model versions were read with the models when the run was planned.
    assert summary["conditions"]["model_versions"]["onnx_int8"] not in ("", "?")
    # One round: its median is the fastest, and there is no move between rounds to judge.
    assert core["round_median_shares"] == [1.0] and core["between_rounds_share"] is None
    assert (tmp_path / "steps.csv").read_text().startswith("target,phase,step,round,target_qps")
    # A window of warm-up came first, reported apart from the measured windows.
    assert step["warmup_s"] == 1.0 and step["warmup_achieved_qps"] > 0
    assert step["windows"] >= 4  # the measured ones: at least the step's 4 s
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert "<p class='answer'>onnx_int8 h" in report  # holds ... or held none ...
    assert "Server on " in report and "generator on " in report
    assert (
        (tmp_path / "knee.csv")
        .read_text()
        .startswith(
            "target,slo_p99_ms,knee_qps,knee_low_qps,knee_high_qps,knee_method,knee_rounds,"
        )
    )
    assert summary["conclusive"] is True and summary["comparisons"] == []
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "latency.png", "queueing.png", "throughput.png",
    }  # fmt: skip


def test_latency_from_schedule_counts_the_waiting_a_stalled_server_causes(
    store: Path, tmp_path: Path
) -> None:
    # One connection, a 20 ms model call and 60 arrivals a second: the server can answer
    # about 45, so requests wait to be sent. Timed from the send, each looks like 20 ms.
    options = [*SLOW, "--allow-faults", "--inject", "onnx_fp32:latency-ms=20"]
    with running_server(store, options=options) as slow:
        summary = sweep(
            slow.url, store, tmp_path, "--variants", "onnx_fp32", "--rates", "60",
            "--arrivals", "constant", "--step-seconds", "3", "--window-seconds", "0.75",
            "--max-in-flight", "1",
        )  # fmt: skip
    step = summary["variants"]["onnx_fp32"]["steps"][0]
    assert step["p50_ms"] > 3 * step["sent_p50_ms"]
    assert step["p99_ms"] > step["sent_p99_ms"]
    assert step["late"] > 0
    assert step["verdict"] != "holds"


def test_a_step_that_has_missed_whatever_comes_next_stops_early(
    store: Path, tmp_path: Path
) -> None:
    # 8 ms a call, one at a time, 300 calls a second asked: from the first second the
    # queue grows and nearly every answer misses 50 ms. Its longest length (20 s, 40
    # windows) could not bring it back under 1% slow, so it stops after its minimum.
    options = [*SLOW, "--allow-faults", "--inject", "onnx_int8:latency-ms=8"]
    with running_server(store, options=options) as slow:
        summary = sweep(
            slow.url, store, tmp_path, "--variants", "onnx_int8", "--rates", "300",
            "--step-seconds", "2", "--window-seconds", "0.5", "--max-step-seconds", "20",
        )  # fmt: skip
    step = summary["variants"]["onnx_int8"]["steps"][0]
    assert step["verdict"] in ("misses-slo", "server-saturated")
    assert step["windows"] == 4  # the minimum: 2 s of 0.5 s windows


def knee(url: str, store: Path, out: Path) -> float | None:
    summary = sweep(
        url, store, out, "--variants", "onnx_int8", "--rates", "100,200",
        "--step-seconds", "2", "--window-seconds", "0.5", "--max-step-seconds", "6",
        "--slo-p99-ms", "200",
    )  # fmt: skip
    found: float | None = summary["variants"]["onnx_int8"]["knee_qps"]
    return found


def test_the_knee_moves_down_when_the_server_gets_slower(
    server: ServerProcess, store: Path, tmp_path: Path
) -> None:
    fast = knee(server.url, store, tmp_path / "fast")
    with running_server(
        store, options=[*SLOW, "--allow-faults", "--inject", "onnx_int8:latency-ms=8"]
    ) as slow_server:
        slow = knee(slow_server.url, store, tmp_path / "slow")
    assert fast is not None and fast >= 190
    assert slow is None or slow < fast


def test_stress_breaks_the_service_and_times_its_recovery_then_a_soak(
    store: Path, tmp_path: Path
) -> None:
    # About 230 answers a second at most, and a short queue: overload sheds quickly.
    options = [*SLOW, "--allow-faults", "--inject", "onnx_int8:latency-ms=4", "--max-queue", "16"]
    with running_server(store, options=options) as slow:
        summary = sweep(
            slow.url, store, tmp_path, "--variants", "onnx_int8", "--rates", "100",
            "--step-seconds", "2", "--window-seconds", "0.5", "--max-step-seconds", "6",
            "--slo-p99-ms", "200", "--stress", "--soak-rate", "50", "--soak-seconds", "4",
        )  # fmt: skip
    target = summary["variants"]["onnx_int8"]
    stress = target["stress"]
    assert stress["breaking_qps"] is not None
    worst = stress["degradation"][-1]
    assert worst["shed_qps"] > worst["goodput_qps"]  # a bounded queue sheds, fast
    assert stress["recovery"]["phase"] == "recovery"
    assert stress["recovery_s"] is not None
    soak = target["soak"]
    # The server's core is read only before a step that starts idle: not between stress
    # steps, which follow one another without a pause, nor before the recovery.
    assert target["steps"][0]["core_rate"] > 0 and soak["step"]["core_rate"] > 0
    assert [s["core_rate"] for s in stress["steps"][1:]] == [None] * (len(stress["steps"]) - 1)
    assert stress["recovery"]["core_rate"] is None
    assert soak["rss_start_mb"] > 10
    assert len(soak["rss_mb"]) >= 3  # sampled once a second
    assert {p.name for p in tmp_path.glob("*.png")} >= {"stress.png", "soak.png"}


@pytest.mark.parametrize(
    "generators", [["--engine", "locust", "--workers", "2"], ["--generators", "2"]]
)
def test_several_generator_processes_share_the_load(
    server: ServerProcess, store: Path, tmp_path: Path, generators: list[str]
) -> None:
    summary = sweep(
        server.url, store, tmp_path, "--variants", "split", "--rates", "120",
        "--arrivals", "constant", "--step-seconds", "4", "--window-seconds", "1",
        "--slo-p99-ms", "500", *generators,
    )  # fmt: skip
    assert summary["settings"]["generators"] == 2
    step = summary["variants"]["split"]["steps"][0]
    assert abs(step["sent_qps"] - 120) <= 120 * 0.10  # the margin that holds on a busy machine
    # Every answer of both processes is in the merged windows, once.
    assert step["server_requests"] == step["requests"]
    assert sum(step["answered_by"].values()) == step["ok"] == step["server_ok"]


def test_an_unknown_variant_is_a_usage_error(server: ServerProcess, store: Path) -> None:
    done = run_perfserve("sweep", "--url", server.url, "--variants", "nope", "--store", str(store))
    assert done.returncode == 2
    assert f"--variants nope: not served by {server.url}" in done.stderr


def test_calibrate_measures_the_generator_against_the_bare_floor_first(
    server: ServerProcess, store: Path, tmp_path: Path
) -> None:
    summary = sweep(
        server.url, store, tmp_path, "--variants", "onnx_int8", "--rates", "100",
        "--step-seconds", "2", "--window-seconds", "0.5", "--max-step-seconds", "4",
        "--slo-p99-ms", "500", "--calibrate",
    )  # fmt: skip
    # Its ceiling depends on the machine's load; that it was measured and recorded does not.
    assert summary["generator_ceiling_qps"] >= 0
    target = summary["variants"]["onnx_int8"]
    lower_bound = target["knee_limited_by"] in ("generator", "unstable", "max-rate")
    assert target["knee_is_lower_bound"] == lower_bound
    assert "generator_late_share" in target["steps"][0]


def test_variants_take_turns_at_the_same_rates_and_are_compared(
    server: ServerProcess, store: Path, tmp_path: Path
) -> None:
    summary = sweep(
        server.url, store, tmp_path, "--variants", "onnx_int8", "onnx_fp32", "--rates",
        "100,200", "--rounds", "2", "--step-seconds", "2", "--window-seconds", "0.5",
        "--max-step-seconds", "4", "--slo-p99-ms", "500",
    )  # fmt: skip
    int8, fp32 = (summary["variants"][v]["steps"] for v in ("onnx_int8", "onnx_fp32"))
    # A, B, A, B ... by step id: each rate offered to both variants in turn, round by round
    # (a rate that does not hold ends that variant's round: the machine here is shared).
    order = [(s["target"], s["target_qps"], s["round"]) for s in sorted(int8 + fp32, key=_id)]
    assert order[:2] == [("onnx_int8", 100, 1), ("onnx_fp32", 100, 1)]
    assert [n for _, _, n in order] == sorted(n for _, _, n in order)
    assert {n for _, _, n in order} == {1, 2}
    (comparison,) = summary["comparisons"]
    assert (comparison["baseline"], comparison["candidate"]) == ("onnx_int8", "onnx_fp32")
    assert comparison["verdict"] in ("higher", "lower", "not_different")
    for target in summary["variants"].values():
        assert target["knee_rounds"] == 2 and target["knee_method"] == "rounds"
    report = (tmp_path / "report.html").read_text()
    assert "<h2>Variants compared under load</h2>" in report


def _id(step: dict[str, Any]) -> int:
    return int(step["step"])


def test_fail_on_miss_exits_1_when_the_asked_rate_misses_the_slo(
    store: Path, tmp_path: Path
) -> None:
    # 8 ms a call, one at a time, 150 calls a second asked: the server is saturated and
    # misses by its own measure, however busy the machine keeps the generator.
    options = [*SLOW, "--allow-faults", "--inject", "onnx_int8:latency-ms=8"]
    with running_server(store, options=options) as slow:
        done = run_perfserve(
            "sweep", "--url", slow.url, "--store", str(store), "--out", str(tmp_path),
            "--metrics-port", "0", "--variants", "onnx_int8", "--rates", "150",
            "--step-seconds", "2", "--window-seconds", "0.5", "--max-step-seconds", "3",
            "--slo-p99-ms", "5", "--fail-on-miss",
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    step = json.loads((tmp_path / "summary.json").read_text())["variants"]["onnx_int8"]["steps"][0]
    assert step["verdict"] in ("misses-slo", "server-saturated")


def test_shift_sends_shifted_rows_that_the_server_reports_as_drift(
    store: Path, tmp_path: Path
) -> None:
    """`--shift "worst area=3"`: the server's drift metrics move for that feature only."""
    env = {"PERFSERVE_DRIFT_INTERVAL_S": "0.2", "PERFSERVE_DRIFT_MIN_ROWS": "200"}
    with running_server(store, env=env) as server:
        summary = sweep(
            server.url, store, tmp_path, "--variants", "sklearn_fp32", "--rates", "300",
            "--step-seconds", "2", "--shift", "worst area=3",
        )  # fmt: skip
        metrics = httpx.get(f"{server.url}/metrics").text
    psi = {
        feature: float(value)
        for feature, value in re.findall(
            r'^perfserve_input_psi\{feature="([^"]+)",variant="sklearn_fp32"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    }
    assert summary["settings"]["shift"] == {"worst area": 3.0}  # the run says what it sent
    assert psi["worst area"] > 0.2
    assert max(value for name, value in psi.items() if name not in ("worst area", "all")) < 0.2
    assert 'perfserve_feature_out_of_range_total{feature="worst area",variant="sklearn_fp32"}' in (
        metrics
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_zipf_bodies_give_a_cached_server_their_hit_ratio(
    store: Path, tmp_path: Path, engine: str
) -> None:
    with running_server(store, options=["--cache-rows", "512"]) as cached:
        summary = sweep(
            cached.url, store, tmp_path, "--variants", "onnx_int8", "--rates", "600",
            "--step-seconds", "4", "--window-seconds", "1", "--slo-p99-ms", "500",
            "--engine", engine, "--bodies", "zipf:0.9",
        )  # fmt: skip
        metrics = httpx.get(f"{cached.url}/metrics", params={"name[]": "perfserve_cache_requests"})
    assert summary["settings"]["bodies"] == "zipf:0.9"
    counts = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "perfserve_cache_requests_total"
    }
    # The first sight of each popular row misses: a little under 0.9 in a short run.
    assert 0.8 < counts["hit"] / (counts["hit"] + counts["miss"]) < 0.95

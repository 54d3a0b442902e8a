"""The sweep's outputs written from a constructed report: the knee marked "≥" wherever it
is only a lower bound (terminal, knee.csv, summary.json, HTML), and the HTML's answer.

The steps are built by hand so that each kind of knee is certain; the real sweep against
a real server is in test_sweep.py."""

from __future__ import annotations

import csv
import html
import json
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests.report.answer import DASH, answer
from loadtests.report.outputs import target_json, write_outputs
from loadtests.report.text import answers, knee_table
from loadtests.sweep.results import StepResult
from loadtests.sweep.runner import SweepPlan, SweepReport, TargetReport
from loadtests.sweep.steps import StepSettings
from tests.utils.sweep_steps import step


def target(name: str, *steps: StepResult) -> TargetReport:
    """A target measured in one round."""
    return TargetReport.from_rounds(name, [list(steps)])


@pytest.fixture
def report() -> SweepReport:
    """onnx_int8: every rate held (a lower bound, ≥ 400); sklearn_fp32: 200 held and 400
    missed the SLO (a measured knee); onnx_fp32: the generator fell behind at 400 (a
    lower bound, ≥ 200)."""
    plan = SweepPlan(
        url="http://127.0.0.1:8000",
        targets=["onnx_int8", "sklearn_fp32", "onnx_fp32"],
        rates=[100, 200, 400],
        steps=StepSettings(slo_p99_ms=50.0, step_seconds=3.0),
        store=Path("model_store"),
    )
    targets = [
        target(
            "onnx_int8",
            step("onnx_int8", 100, "holds", 3.0),
            step("onnx_int8", 200, "holds", 4.0),
            step("onnx_int8", 400, "holds", 6.0),
        ),
        target(
            "sklearn_fp32",
            step("sklearn_fp32", 100, "holds", 10.0),
            step("sklearn_fp32", 200, "holds", 30.0),
            step("sklearn_fp32", 400, "misses-slo", 218.0),
        ),
        target(
            "onnx_fp32",
            step("onnx_fp32", 100, "holds", 3.0),
            step("onnx_fp32", 200, "holds", 5.0),
            step("onnx_fp32", 400, "generator-bound", 90.0),
        ),
    ]
    conditions = {
        "date": "2026-11-30 18:00 UTC", "cpu_model": "Test CPU", "logical_cpus": 2,
        "code_revision": "0123456789abcdef", "model_versions": {"onnx_int8": "m-1"},
        "server_cpus": [0], "generator_cpus": [1],
    }  # fmt: skip
    return SweepReport(plan, targets, conditions=conditions)


def test_the_terminal_marks_only_lower_bounds(report: SweepReport) -> None:
    rows = {line.split()[0]: line.split()[1:5] for line in knee_table(report).splitlines()[2:]}
    # One round: the interval is the search's bracket, open above a lower bound.
    assert rows["onnx_int8"] == ["≥", "400", f"400{DASH}?", "max-rate"]
    assert rows["onnx_fp32"] == ["≥", "200", f"200{DASH}?", "generator"]
    assert rows["sklearn_fp32"][:3] == ["200", f"200{DASH}400", "slo"]


def test_files_carry_the_lower_bound_flag(report: SweepReport, tmp_path: Path) -> None:
    document = write_outputs(report, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(document))
    flags = {name: t["knee_is_lower_bound"] for name, t in summary["variants"].items()}
    assert flags == {"onnx_int8": True, "sklearn_fp32": False, "onnx_fp32": True}
    with (tmp_path / "knee.csv").open() as file:
        knees = {row["target"]: row for row in csv.DictReader(file)}
    assert knees["onnx_int8"]["knee_is_lower_bound"] == "True"
    assert knees["onnx_int8"]["knee_qps"] == "400"
    assert knees["sklearn_fp32"]["knee_is_lower_bound"] == "False"
    for name in ("latency.png", "throughput.png", "queueing.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_the_html_opens_with_the_answer_and_its_conditions(
    report: SweepReport, tmp_path: Path
) -> None:
    write_outputs(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    first = page.index("<p class='answer'>")
    assert page.index("<h1>How much load does one replica hold at p99 ≤ 50 ms?</h1>") < first
    assert (
        "onnx_int8 holds ≥ 400 req/s (one round) at p99 ≤ 50 ms on one replica: a lower bound, "
        "since the highest rate tried held (try higher rates)." in page
    )
    assert "sklearn_fp32 holds 200 req/s (one round; below 400) at p99 ≤ 50 ms on one " in page
    assert "since the next rate was limited by the load generator" in page
    assert "Test CPU (2 logical CPUs)" in page and "code 0123456789ab" in page
    assert "Server on CPU 0 (pinned), generator on CPU 1 (pinned)" in page
    knee_cells = [cell for cell in page.split("<td><b>")[1:]]
    assert [cell.split("</b>")[0] for cell in knee_cells] == ["≥ 400", "200", "≥ 200"]
    assert page.count("<tr class='fails'>") == 4  # two failing steps, in both tables


def test_the_answers_read_the_same_flag_in_the_terminal(
    report: SweepReport, tmp_path: Path
) -> None:
    lines = answers(write_outputs(report, tmp_path)).splitlines()
    assert lines[0].startswith("onnx_int8 holds ≥ 400 req/s")
    assert lines[1].startswith("sklearn_fp32 holds 200 req/s")


def test_a_rate_tried_twice_shows_the_step_that_held_at_the_knee(tmp_path: Path) -> None:
    """A step that did not settle is retried at the same rate; the knee's figures are
    those of the retry that held, as in the terminal's table."""
    plan = SweepPlan(
        url="http://127.0.0.1:8000",
        targets=["onnx_fp32"],
        rates=[100, 200, 400],
        steps=StepSettings(slo_p99_ms=50.0, step_seconds=3.0),
        store=Path("model_store"),
    )
    retried = target(
        "onnx_fp32",
        step("onnx_fp32", 100, "holds", 3.0),
        step("onnx_fp32", 200, "unstable", 16.0),
        step("onnx_fp32", 200, "holds", 3.5),
        step("onnx_fp32", 400, "misses-slo", 120.0),
    )
    write_outputs(SweepReport(plan, [retried]), tmp_path)
    page = (tmp_path / "report.html").read_text()
    knee_row = page.split("<td><b>200</b></td>")[1].split("</tr>")[0]
    assert "3.50" in knee_row and "16.00" not in knee_row


def test_the_answer_names_the_rate_that_failed_not_a_retried_rate_that_then_held() -> None:
    first_try = step("onnx_fp32", 12_000, "unstable", 80.0)
    held = step("onnx_fp32", 12_000, "holds", 30.0)
    # Retried, it held, a little short of the rate: the knee is what it achieved.
    retried = replace(held, client=replace(held.client, achieved_qps=11_952.0))
    swept = target(
        "onnx_fp32", step("onnx_fp32", 10_000, "holds", 20.0), first_try, retried,
        step("onnx_fp32", 14_000, "misses-slo", 120.0),
    )  # fmt: skip
    sentence = answer("onnx_fp32", target_json(swept, None), slo_ms=50.0)
    assert sentence == (
        "onnx_fp32 holds 11,952 req/s (one round; below 14,000) at p99 ≤ 50 ms on one replica; "
        "at 14,000/s it missed the SLO (p99 120.0 ms)."
    )


def test_a_generator_that_fell_behind_is_told_apart_from_one_its_machine_held_up() -> None:
    def behind(cpu: float, late_share: float) -> str:
        fell_behind = replace(
            step("onnx_fp32", 2000, "generator-bound", 52.0),
            generator_cpu=cpu, generator_late_share=late_share,
        )  # fmt: skip
        swept = target("onnx_fp32", step("onnx_fp32", 1000, "holds", 20.0), fell_behind)
        return answer("onnx_fp32", target_json(swept, None), slo_ms=50.0)

    assert behind(0.95, 0.2).endswith(
        "(2,000/s: generator-bound; its busiest process used 0.95 of a core: add generator "
        "processes or free cores)."
    )
    assert behind(0.25, 0.013).endswith(
        "(2,000/s: generator-bound; 1.3% of its sends left over 5 ms late while its busiest "
        "process used 0.25 of a core: more likely the machine's delays than its own work, so "
        "repeat the sweep before adding generators)."
    )


def steadied(speeds: tuple[float, float]) -> SweepReport:
    """onnx_fp32 held 10,000/s and missed at 14,000/s, its server's core read at
    `speeds` (shares of the fastest) before the two steps."""
    plan = SweepPlan(
        url="http://127.0.0.1:8000",
        targets=["onnx_fp32"],
        rates=[10_000, 14_000],
        steps=StepSettings(slo_p99_ms=50.0, step_seconds=3.0),
        store=Path("model_store"),
    )
    held, missed = (
        replace(step("onnx_fp32", rate, verdict, p99), core_rate=30 * speed)
        for (rate, verdict, p99), speed in zip(
            [(10_000, "holds", 20.0), (14_000, "misses-slo", 120.0)], speeds, strict=True
        )
    )
    read = {"cpu": 0, "fastest_rate": 30.0, "slowest_share": min(speeds), "readings": 2}
    return SweepReport(plan, [target("onnx_fp32", held, missed)], conditions={"core_speed": read})


def test_a_miss_on_a_slowed_core_says_so_and_the_conditions_warn(tmp_path: Path) -> None:
    report = steadied((1.0, 0.7))
    document = write_outputs(report, tmp_path)
    assert answers(document) == (
        "onnx_fp32 holds 10,000 req/s (one round; below 14,000) at p99 ≤ 50 ms on one "
        "replica; at 14,000/s it missed "
        "the SLO (p99 120.0 ms), with the server's core at 0.70 of this run's fastest speed just "
        "before it."
    )
    warning = (
        "The server's core (CPU 0), read with a fixed loop while idle before each step, ran "
        "at 0.70 to 1.00 of its fastest speed in this run: the machine's own speed moved, and "
        "a knee moves with it, so repeat the sweep before comparing knees"
    )
    assert knee_table(report).splitlines()[-1].startswith(warning)
    assert html.escape(warning) in (tmp_path / "report.html").read_text()
    with (tmp_path / "steps.csv").open() as file:
        assert [row["core_speed"] for row in csv.DictReader(file)] == ["1.0", "0.7"]


@pytest.mark.parametrize("speed", [0.95, 0.899])
def test_a_steady_core_is_stated_without_a_warning(tmp_path: Path, speed: float) -> None:
    report = steadied((1.0, speed))
    sentence = answers(write_outputs(report, tmp_path))
    assert sentence.endswith("at 14,000/s it missed the SLO (p99 120.0 ms).")
    assert knee_table(report).splitlines()[-1] == (
        "The server's core (CPU 0), read with a fixed loop while idle before each step, ran "
        f"at {speed:.2f} to 1.00 of its fastest speed in this run."
    )


def test_one_slow_reading_in_rounds_that_ran_alike_is_shown_without_a_warning(
    tmp_path: Path,
) -> None:
    report = steadied((1.0, 0.6))
    read = report.conditions["core_speed"] | {"between_rounds_share": 0.96}
    report.conditions["core_speed"] = read
    assert knee_table(report).splitlines()[-1] == (
        "The server's core (CPU 0), read with a fixed loop while idle before each step, ran "
        "at 0.60 to 1.00 of its fastest speed in this run, and its slowest round's median at "
        "0.96 of its fastest round's."
    )


def test_the_report_links_profiles_beside_it_and_says_how_to_make_them(
    report: SweepReport, tmp_path: Path
) -> None:
    # A profile folder beside the report's, as `perfserve profile --out` leaves it.
    profile = tmp_path / "profile-sklearn_fp32"
    profile.mkdir()
    (profile / "flamegraph.svg").write_text("<svg/>")
    (profile / "profile.json").write_text(
        json.dumps(
            {
                "settings": {"variant": "sklearn_fp32", "rate": 100.0},
                "table": {
                    "measured_us": 61.5,
                    "us_per_request": {"other": 50.0, "model": 30.0, "decode": 5.0},
                },
            }
        )
    )
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "profile.json").write_text("not json")
    write_outputs(report, tmp_path / "sweep")
    page = (tmp_path / "sweep" / "report.html").read_text()
    assert "<h2>Where the time goes</h2>" in page
    assert "<td>sklearn_fp32</td><td>100</td><td>61.5</td><td>model (49%)</td>" in page
    href = "../profile-sklearn_fp32/flamegraph.svg"
    assert f"href='{href}'" in page and (tmp_path / "sweep" / href).exists()
    # sklearn_fp32's knee is 200/s: profile it at 100/s and 180/s.
    assert (
        "perfserve profile --variant sklearn_fp32 --rate 100 --seconds 20 --sample-rate 250 "
        f"--store model_store --out {tmp_path}/profile-sklearn_fp32-50"
    ) in html.unescape(page)
    assert "--variant sklearn_fp32 --rate 180 " in html.unescape(page)

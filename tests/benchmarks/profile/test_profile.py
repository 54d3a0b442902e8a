"""`perfserve profile`'s pieces in process: frames to stages, the table against /proc,
the flame graphs, the comparison's noise rule, and the one-line environment failures."""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from perfserve.benchmarks.profile import spy
from perfserve.benchmarks.profile.compare import stage_difference
from perfserve.benchmarks.profile.flamegraph import render
from perfserve.benchmarks.profile.stacks import parse_collapsed, speedscope
from perfserve.benchmarks.profile.stages import IDLE, STAGES, stage_of
from perfserve.benchmarks.profile.table import Window, stack_weights, stage_table
from perfserve.cli import main

MAIN = "thread (100): MainThread"
LOOP = ["_run_module_as_main (<frozen runpy>:198)", "Runner.run (asyncio/runners.py:86)"]
PREDICT = [*LOOP, "PredictEndpoint._predict (service/predict.py:96)"]


@pytest.mark.parametrize(
    ("frames", "stage"),
    [
        (
            [*PREDICT, "PredictEndpoint._answer (service/predict.py:200)",
             "encode_prediction (service/payload.py:80)", "_slow (sitecustomize.py:1)"],
            "encode",
        ),
        (
            [*PREDICT, "parse_instances (service/payload.py:30)",
             "_array_impl (numpy/_core/numeric.py:10)"],
            "decode",
        ),
        ([*PREDICT, "_send (service/predict.py:270)",
          "_Prefixed.write (service/connections.py:137)"], "event_loop"),
        ([*PREDICT, "_send (service/predict.py:270)",
          "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:464)"],
         "http_parse"),
        ([*PREDICT, "FoldedHistogram.observe (service/metrics/folding.py:38)"], "metrics"),
        ([*LOOP, "MicroBatcher._run (service/batching.py:236)",
          "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:400)"], "model"),
        ([*LOOP, "MicroBatcher._gather (service/batching.py:275)"], "queue_wait"),
        ([*PREDICT, "PredictEndpoint._route (service/predict.py:170)"], "admission"),
        (LOOP, "event_loop"),
        ([*PREDICT, "gc_collect_main (libpython3.11.so.1.0)"], "gc"),
        (["thread (7): worker", "run (some/tool.py:3)"], "other"),
        (["thread (7): AnyIO worker thread", "Condition.wait (threading.py:295)"], IDLE),
        ([*LOOP, "uv_run (core.c:464)", "epoll_pwait (libc.so.6)"], IDLE),
        (["thread (7): w", "PyThread_acquire_lock_timed (libpython3.11.so.1.0)",
          "0x7f6e1acaed90 (libc.so.6)"], IDLE),
    ],
)  # fmt: skip
def test_each_frame_maps_to_its_stage(frames: list[str], stage: str) -> None:
    assert stage_of([MAIN, *frames]) == stage


def test_a_wait_only_counts_as_asleep_when_it_is_the_innermost_frame() -> None:
    render_in_worker = ["_worker (concurrent/futures/thread.py:69)",
                        "generate_latest (prometheus_client/exposition.py:290)"]  # fmt: skip
    assert stage_of(["thread (8): w", *render_in_worker]) == "metrics"


def _stacks(**counts: int) -> Counter[tuple[str, ...]]:
    """One stack per stage name given (a frame of that stage), on thread 100."""
    frames = {
        "encode": "encode_prediction (service/payload.py:80)",
        "decode": "parse_instances (service/payload.py:30)",
        "event_loop": "Runner.run (asyncio/runners.py:86)",
        "idle": "Condition.wait (threading.py:295)",
    }
    return Counter({(MAIN, frames[stage]): count for stage, count in counts.items()})


def test_the_table_splits_each_threads_measured_cpu_by_its_samples() -> None:
    window = Window(
        stacks=_stacks(encode=10, decode=30, event_loop=60, idle=500),
        rate=1000,
        cpu_s=0.21,
        thread_cpu_s={100: 0.2, 101: 0.01},  # 101 never sampled running
        requests=1000,
    )
    table = stage_table([window])
    assert table.measured_us == pytest.approx(210.0)
    assert table.us_per_request["encode"] == pytest.approx(20.0)
    assert table.us_per_request["decode"] == pytest.approx(60.0)
    assert table.us_per_request["event_loop"] == pytest.approx(120.0)
    assert table.us_per_request["other"] == pytest.approx(10.0)  # the unseen thread
    assert table.unseen_threads_us == pytest.approx(10.0)
    assert table.sampled_us == pytest.approx(100.0)  # 100 running samples at 1 ms
    assert table.idle_samples == 500
    assert table.adds_up
    assert sum(stack_weights([window]).values()) == pytest.approx(210.0)  # unseen drawn too


def test_a_table_that_misses_cpu_says_it_does_not_add_up() -> None:
    window = Window(_stacks(encode=10), 1000, cpu_s=0.5, thread_cpu_s={100: 0.2}, requests=1000)
    table = stage_table([window])
    assert not table.adds_up
    assert table.to_json()["coverage"] == pytest.approx(0.4)


def test_collapsed_stacks_and_speedscope() -> None:
    stacks = parse_collapsed("a (x.py:1);b (y.py:2) 3\na (x.py:1) 1\nnot a line\n")
    assert stacks == {("a (x.py:1)", "b (y.py:2)"): 3, ("a (x.py:1)",): 1}
    document = speedscope(stacks, "test", 0.001)
    profile = document["profiles"][0]
    assert profile["endValue"] == pytest.approx(0.004)
    names = [frame["name"] for frame in document["shared"]["frames"]]
    assert names == ["a", "b"]
    assert document["shared"]["frames"][1] == {"name": "b", "file": "y.py", "line": 2}


def test_flame_graphs_are_svg_with_a_box_per_frame(tmp_path: Path) -> None:
    after: dict[tuple[str, ...], float] = {("main", "encode"): 30.0, ("main", "decode"): 10.0}
    before: dict[tuple[str, ...], float] = {("main", "encode"): 10.0, ("main", "decode"): 10.0}
    render(after, "one", tmp_path / "one.svg")
    render(after, "diff", tmp_path / "diff.svg", before)
    for name in ("one.svg", "diff.svg"):
        root = ElementTree.parse(tmp_path / name).getroot()
        titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
        assert any(title.startswith("encode") for title in titles)
    diff = (tmp_path / "diff.svg").read_text()
    assert "(was 10.00, +20.00)" in diff


def _profile(us: dict[str, list[float]]) -> dict[str, Any]:
    """A profile.json with these per-repeat costs (other stages at 5 µs, steady)."""
    repeats = len(next(iter(us.values())))
    per_repeat = [
        {"us_per_request": {s: us.get(s, [5.0] * repeats)[i] for s in STAGES}}
        for i in range(repeats)
    ]
    mean = {s: sum(r["us_per_request"][s] for r in per_repeat) / repeats for s in STAGES}
    return {"table": {"us_per_request": mean}, "repeats": per_repeat}


def test_a_stage_moves_only_beyond_the_repeats_noise() -> None:
    a = _profile({"encode": [4.0, 5.0, 4.5, 4.2], "event_loop": [90.0, 100.0, 95.0, 85.0]})
    same = _profile({"encode": [4.4, 4.1, 5.2, 4.6], "event_loop": [96.0, 88.0, 99.0, 92.0]})
    slower = _profile({"encode": [24.0, 26.0, 23.0, 25.0], "event_loop": [91.0, 97.0, 90.0, 99.0]})
    assert not [row["stage"] for row in stage_difference(a, same) if row["moved"]]
    moved = [row["stage"] for row in stage_difference(a, slower) if row["moved"]]
    assert moved == ["encode"]


def test_missing_py_spy_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(spy.EnvironmentProblem, match=r"pip install 'perfserve\[profile\]'"):
        spy.find_py_spy()


def test_the_command_exits_4_with_one_line_when_py_spy_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(
        ["profile", "--variant", "onnx_int8", "--store", str(store), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert err.count("\n") == 1 and "py-spy is not installed" in err


@pytest.mark.parametrize(
    ("scope", "needle"), [("1", "ptrace_scope=0"), ("3", "disabled until reboot")]
)
def test_a_kernel_refusing_ptrace_is_one_line_with_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scope: str, needle: str
) -> None:
    setting = tmp_path / "ptrace_scope"
    setting.write_text(scope + "\n")
    monkeypatch.setattr(spy, "PTRACE_SCOPE", setting)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(spy.EnvironmentProblem, match=needle):
        spy.check_ptrace(1234)


def test_py_spy_refused_says_what_to_set() -> None:
    line = spy.failure_line("Error: Permission Denied (os error 13)\n", 42)
    assert "kernel.yama.ptrace_scope=0" in line and "CAP_SYS_PTRACE" in line


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile"], "--variant is required"),
        (["profile", "--variant", "x", "--repeats", "1"], "--repeats must be at least 2"),
        (["profile", "--compare", "/nonexistent/a", "/nonexistent/b"], "no profile.json"),
        (["profile", "--variant", "x", "--memory", "--url", "http://127.0.0.1:1"], "--memory"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code = main([*argv, "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1


def test_compare_writes_its_table_and_diff_graph(tmp_path: Path) -> None:
    from perfserve.benchmarks.profile.compare import compare

    for name, encode in (("a", [4.0, 5.0, 4.5]), ("b", [24.0, 25.0, 26.0])):
        folder = tmp_path / name
        folder.mkdir()
        data = _profile({"encode": encode})
        data["settings"] = {"variant": "onnx_int8", "rate": 1000.0, "sample_rate": 1000}
        data["table"]["requests"] = 1000.0
        data["table"]["measured_us"] = 100.0
        (folder / "profile.json").write_text(json.dumps(data))
        cost = sum(encode) / len(encode)
        (folder / "weights.txt").write_text(
            f"thread: MainThread;encode_prediction (service/payload.py:80) {cost}\n"
        )
    text, _ = compare(tmp_path / "a", tmp_path / "b", tmp_path / "out")
    assert "Moved beyond run-to-run noise: encode." in text
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["moved"] == ["encode"]
    assert (tmp_path / "out" / "diff-flamegraph.svg").exists()


def test_compare_warns_when_the_two_batched_differently() -> None:
    from perfserve.benchmarks.profile.compare import batching, compare_text

    a, b = _profile({"model": [40.0, 42.0]}), _profile({"model": [22.0, 21.0]})
    for profile, rows in ((a, 2.4), (b, 15.3)):
        profile["settings"] = {"variant": "onnx_int8", "rate": 1000.0}
        profile["table"]["measured_us"] = 300.0
        profile["load"] = {"median_of_repeats": {"batch_size": rows}}
    assert batching(a, b) == {"a_batch_size": 2.4, "b_batch_size": 15.3, "differ": True}
    text = compare_text(Path("a"), Path("b"), a, b, stage_difference(a, b))
    assert "The two batched differently (median batch A 2.4 rows, B 15.3)" in text
    b["load"]["median_of_repeats"]["batch_size"] = 2.6
    assert not batching(a, b)["differ"]
    assert "batched differently" not in compare_text(Path("a"), Path("b"), a, b, [])


def test_allocation_sites_are_named_from_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from perfserve.benchmarks.profile.memory import _short

    monkeypatch.chdir("/")
    venv = "/v/lib/python3.11/site-packages/uvicorn/protocols/http/httptools_impl.py:174"
    assert (
        _short(f"data_received:{venv}")
        == "data_received (uvicorn/protocols/http/httptools_impl.py:174)"
    )
    stdlib = "/root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/runners.py:118"
    assert _short(f"run:{stdlib}") == "run (asyncio/runners.py:118)"

"""The JMeter plan: well-formed, four thread groups mirroring the Locust users, every
property it reads passed by its runner, and its results gated like the k6 thresholds.

Debian's `jmeter` (2.13) cannot run it headless, nor any plan: its XStream refuses
JMeter's own classes (`ForbiddenClassException: ScriptWrapper`) as the plan is loaded.
So the plan is validated here as XML and as a JMeter tree, the runner's handling of that
failure is checked against the installed JMeter where there is one, and the results gate
is tested on results in JMeter's CSV format."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadtests.jmeter.__main__ import PLAN, SCENARIOS, jmeter_command, parse_args, write_bodies
from loadtests.jmeter.results import crossed, read_results
from perfserve_common.protocols import parse_protocol

JTL_HEAD = "timeStamp,elapsed,label,responseCode,success,user,variant\n"


def tree() -> ET.Element:
    return ET.parse(PLAN).getroot()


def test_the_plan_is_a_well_formed_jmeter_tree() -> None:
    root = tree()
    assert root.tag == "jmeterTestPlan"
    # JMeter's tree: every element is followed by the hashTree of its children.
    for parent in root.iter("hashTree"):
        children = list(parent)
        elements = children[0::2]
        assert all(child.tag == "hashTree" for child in children[1::2])
        assert all(element.tag != "hashTree" for element in elements)
        assert len(children) % 2 == 0


def test_each_locust_user_is_a_thread_group_with_pace_bodies_and_checks() -> None:
    root = tree()
    groups = root.findall(".//ThreadGroup")
    assert [group.get("testname") for group in groups] == list(SCENARIOS)
    for name in SCENARIOS:
        body = root.find(f".//HTTPSamplerProxy[@testname='{name}']")
        assert body is not None
        assert root.find(f".//ConstantThroughputTimer[@testname='{name} pace']") is not None
        assert root.find(f".//CSVDataSet[@testname='{name} bodies']") is not None
    canary = ET.tostring(root).decode()
    assert "X-User-Id" in canary and "__Random(1,${__P(canary_users,1000)},user)" in canary


def test_every_property_the_plan_reads_is_passed_by_the_runner(tmp_path: Path) -> None:
    used = set(re.findall(r"__P\(([a-z_]+),", PLAN.read_text()))
    args = parse_args(["--out", str(tmp_path), "--url", "http://127.0.0.1:9"])
    command = jmeter_command("jmeter", args, tmp_path)
    passed = {part[2:].split("=", 1)[0] for part in command if part.startswith("-J")}
    assert used <= passed, used - passed


@pytest.mark.parametrize("protocol", ["perfserve", "v2"])
def test_bodies_are_one_per_line_for_every_data_set(
    store: Path, tmp_path: Path, protocol: str
) -> None:
    write_bodies(tmp_path, store, parse_protocol(protocol), 4)
    files = set(re.findall(r"\}/([a-z_]+\.txt)<", PLAN.read_text()))
    assert files == {"single_row.txt", "batch.txt", "bad.txt"}
    for name in files:
        lines = (tmp_path / name).read_text().splitlines()
        assert lines and all("\t" not in line for line in lines)
    first = (tmp_path / "single_row.txt").read_text().splitlines()[0]
    assert ('"inputs"' in first) == (protocol == "v2")


def test_the_results_gate(tmp_path: Path) -> None:
    results = tmp_path / "results.jtl"
    rows = [f"0,{5 + i % 3},single_row,200,true,," for i in range(200)]
    rows += ["0,3,bad_share,422,true,,", "0,5,canary,200,true,7,onnx_int8"]
    results.write_text(JTL_HEAD + "\n".join(rows) + "\n")
    scenarios = read_results(results)
    assert scenarios["single_row"].p99_ms == 7
    assert crossed(scenarios, p99_ms=50, max_error_rate=0.01) == []
    assert crossed(scenarios, p99_ms=6, max_error_rate=0.01) == ["single_row: p99 7.0 ms > 6 ms"]
    moved = "0,5,canary,200,true,7,onnx_fp32\n" + "0,1,single_row,500,false,,\n" * 5
    results.write_text(results.read_text() + moved)
    lines = crossed(read_results(results), p99_ms=50, max_error_rate=0.01)
    assert lines == [
        "single_row: 5 of 205 requests failed (2.4% > 1.0%)",
        "canary: 1 users changed variant",
    ]


@pytest.mark.integration
def test_the_runner_says_why_debians_jmeter_ran_nothing(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("jmeter") is None:
        pytest.skip("jmeter is not installed")
    from loadtests.jmeter.__main__ import main

    code = main(["--url", "http://127.0.0.1:9", "--store", str(store), "--out", str(tmp_path)])
    if code == 4:  # Debian's 2.13: no plan loads
        assert "cannot load any plan" in capsys.readouterr().err
    else:  # a JMeter that runs plans: nothing answers on port 9, every request failed
        assert code == 1 and "threshold crossed" in capsys.readouterr().out

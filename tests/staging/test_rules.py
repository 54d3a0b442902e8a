"""The stack's Prometheus config and rules pass promtool, and their unit tests pass.

The unit tests themselves (prometheus/tests/*.yml) feed synthetic series to the rules;
here we also make sure none of them is left out: every alert is shown firing and shown
quiet, and every recording rule's value is checked at least once.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from perfserve_common.slo import SLO_P99_MS
from tests.utils import require_tool
from tests.utils.stack import PROMETHEUS_CONFIG, RULE_TESTS, RULES


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [require_tool("promtool"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def unit_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


@pytest.mark.integration
def test_config_passes_promtool() -> None:
    checked = promtool("check", "config", PROMETHEUS_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(RULES)} rule files found" in checked.stdout


@pytest.mark.integration
def test_rules_pass_promtool() -> None:
    checked = promtool("check", "rules", *RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.integration
def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    tested = promtool("test", "rules", *RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_shown_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert {"PerfserveP99AboveSLO", "PerfserveErrorRatioHigh", "PerfserveShedding"} <= alerts
    checks = [check for test in unit_tests() for check in test.get("alert_rule_test", [])]
    fires = {check["alertname"] for check in checks if check.get("exp_alerts")}
    quiet = {check["alertname"] for check in checks if not check.get("exp_alerts")}
    assert alerts <= fires, f"never shown firing: {alerts - fires}"
    assert alerts <= quiet, f"never shown quiet: {alerts - quiet}"


def test_every_alert_says_what_is_wrong() -> None:
    for rule in rules():
        if "alert" in rule:
            annotations = rule["annotations"]
            assert "{{ $labels.variant }}" in annotations["summary"], rule["alert"]
            assert len(annotations["description"]) > 80, rule["alert"]
            assert rule["labels"]["severity"] in {"page", "warning"}


def test_every_recording_rule_is_checked_by_a_unit_test() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    exprs = " ".join(
        check["expr"] for test in unit_tests() for check in test.get("promql_expr_test", [])
    )
    unchecked = {name for name in recorded if name not in exprs}
    assert not unchecked, f"recording rules no unit test checks: {unchecked}"


def test_the_slo_rule_holds_the_slo_the_tools_judge_against() -> None:
    """One SLO: the alert and dashboard read the rule, sweep and demo read
    perfserve_common/slo.py."""
    (slo,) = [rule for rule in rules() if rule.get("record") == "perfserve:slo_p99_seconds"]
    seconds = re.fullmatch(r"vector\(([0-9.]+)\)", slo["expr"].strip())
    assert seconds is not None, slo["expr"]
    assert float(seconds.group(1)) * 1000 == pytest.approx(SLO_P99_MS)

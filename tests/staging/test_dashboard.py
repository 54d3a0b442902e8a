"""The Grafana dashboard's structure: what a user watching a canary relies on at a glance.

Its queries are run against a real Prometheus in test_stack.py; here, the JSON itself:
ids, datasource, units, queries, variables and the PromQL habits (rate() windows,
histogram_quantile over `le`, no lifetime averages).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.utils.stack import (
    DATASOURCES,
    ROOT,
    load_dashboard,
    panel_queries,
    panels,
)

ROWS = [
    "Overview",
    "Tail latency",
    "Queueing",
    "Canary",
    "Resources",
    "Load generator",
    "Rollout",
    "Drift",
]
COUNTER_SERIES = re.compile(r"\b[a-z_:]+_(?:total|sum|count|bucket)\b")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def visible(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in panels(dashboard) if panel["type"] != "row"]


def test_rows_are_those_of_the_issue(dashboard: dict[str, Any]) -> None:
    rows = [panel["title"] for panel in panels(dashboard) if panel["type"] == "row"]
    assert rows == ROWS


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(provisioned) == 1
    uid = provisioned[0]["uid"]
    for panel in visible(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid


def test_every_panel_has_a_query_a_unit_and_a_description(dashboard: dict[str, Any]) -> None:
    for panel in visible(dashboard):
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
        assert len(panel.get("description", "")) > 30, f"{panel['title']} is not described"
        if panel["type"] == "heatmap":
            assert panel["options"]["yAxis"].get("unit"), panel["title"]
            assert panel["options"]["calculate"] is False  # buckets come from Prometheus
            assert all(target.get("format") == "heatmap" for target in panel["targets"])


def test_counters_and_histograms_are_read_through_rate_windows(dashboard: dict[str, Any]) -> None:
    for query in panel_queries(dashboard):
        for match in COUNTER_SERIES.finditer(query.expr):
            before = query.expr[: match.start()]
            assert re.search(r"\b(rate|increase|changes)\($", before), (
                f"{query.panel}: {match.group()} outside rate(): a lifetime total or average"
            )
        for window in re.findall(r"\[([^\]]+)\]", query.expr):
            assert window == "$__rate_interval", f"{query.panel}: fixed window [{window}]"


def test_quantiles_aggregate_buckets_by_le(dashboard: dict[str, Any]) -> None:
    quantiles: set[float] = set()
    for query in panel_queries(dashboard):
        for quantile, labels in re.findall(
            r"histogram_quantile\(([\d.]+), sum by \(([^)]*)\) \(rate\([a-z_]+_bucket", query.expr
        ):
            quantiles.add(float(quantile))
            assert "le" in [label.strip() for label in labels.split(",")], query
        assert query.expr.count("histogram_quantile(") == len(
            re.findall(r"histogram_quantile\([\d.]+, sum by \([^)]*\) \(rate\(", query.expr)
        ), f"{query.panel}: histogram_quantile over something other than summed bucket rates"
    assert quantiles == {0.5, 0.95, 0.99}


def test_service_queries_follow_the_variables(dashboard: dict[str, Any]) -> None:
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names == ["variant", "instance"]
    for query in panel_queries(dashboard):
        for selector in re.findall(
            r"\b(perfserve_(?!loadgen)[a-z_]+|process_[a-z_]+)\{([^}]*)\}", query.expr
        ):
            metric, labels = selector
            assert 'instance=~"$instance"' in labels, f"{query.panel}: {metric} ignores $instance"
            if metric.startswith("process_"):
                assert 'job="perfserve"' in labels, f"{query.panel}: {metric} of any job"


def test_slo_line_and_utilization_guide_are_drawn(dashboard: dict[str, Any]) -> None:
    by_title = {panel["title"]: panel for panel in visible(dashboard)}
    latency = by_title["Request latency percentiles by variant"]
    assert "perfserve:slo_p99_seconds" in [t["expr"] for t in latency["targets"]]
    utilization = by_title["Runner utilization"]["fieldConfig"]["defaults"]
    assert utilization["custom"]["thresholdsStyle"]["mode"] != "off"
    assert [step["value"] for step in utilization["thresholds"]["steps"]] == [None, 0.7]


def test_split_changes_and_rollout_steps_are_annotated(dashboard: dict[str, Any]) -> None:
    annotations = [a for a in dashboard["annotations"]["list"] if "expr" in a]
    assert [a["name"] for a in annotations] == ["Split changes", "Rollout steps"]
    assert "changes(perfserve_traffic_weight" in annotations[0]["expr"]
    assert "changes(perfserve_rollout_step" in annotations[1]["expr"]


def test_home_dashboard_is_the_provisioned_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, _ = volume.split(":")
        mounts[target] = source
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, name = home.rsplit("/", 1)
    assert (ROOT / mounts[folder] / name).is_file()
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/perfserve.yml").read_text())[
        "providers"
    ][0]
    assert provider["options"]["path"] == folder
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"

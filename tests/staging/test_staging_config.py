"""What `perfserve staging up` decides before it starts anything: Grafana's settings and
provisioning taken from the project's files, a bad state folder and a port in use as
one-line usage errors."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
import yaml

from perfserve.staging.stack import (
    COMPOSE,
    GRAFANA,
    STATE_FILE,
    TOOLS,
    Options,
    grafana_env,
    grafana_provisioning,
    read_state,
    up,
)
from perfserve_common.usage import UsageError
from tests.utils import require_tool


def test_grafana_is_provisioned_from_the_projects_files_with_local_addresses(
    tmp_path: Path,
) -> None:
    out = grafana_provisioning(tmp_path, "http://127.0.0.1:9999")
    for kind in ("datasources", "dashboards"):
        sources = sorted((GRAFANA / "provisioning" / kind).glob("*.yml"))
        assert sources and [p.name for p in sorted((out / kind).glob("*.yml"))] == [
            p.name for p in sources
        ]
    (datasource,) = yaml.safe_load((out / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    project = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert datasource == {**project["datasources"][0], "url": "http://127.0.0.1:9999"}
    (provider,) = yaml.safe_load((out / "dashboards" / "perfserve.yml").read_text())["providers"]
    assert Path(provider["options"]["path"]) == GRAFANA / "dashboards"
    assert (Path(provider["options"]["path"]) / "perfserve.json").is_file()


def test_grafana_runs_with_composes_settings_and_a_private_password(tmp_path: Path) -> None:
    env = grafana_env(tmp_path, "http://127.0.0.1:9999", 3999)
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["environment"]
    for key, value in compose.items():
        if "PASSWORD" not in key and key != "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH":
            assert env[key] == str(value), key
    assert Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1" and env["GF_SERVER_HTTP_PORT"] == "3999"
    password = tmp_path / "admin-password"
    assert password.read_text().strip() == env["GF_SECURITY_ADMIN_PASSWORD"]
    assert len(env["GF_SECURITY_ADMIN_PASSWORD"]) >= 32
    assert stat.S_IMODE(password.stat().st_mode) == 0o600


def test_a_state_file_that_is_not_a_stacks_is_a_usage_error(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"parts": [{"pid": 1}]}')
    with pytest.raises(UsageError, match=r"--state-dir .* is not a stack's state"):
        read_state(tmp_path)


def test_a_port_in_use_names_its_option_before_anything_starts(store: Path, tmp_path: Path) -> None:
    for tool in TOOLS:
        require_tool(tool)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        options = Options(replicas=1, store=store, state_dir=tmp_path, prometheus_port=port)
        with pytest.raises(UsageError, match=f"--prometheus-port {port}: cannot listen"):
            up(options)
    assert list(tmp_path.iterdir()) == []

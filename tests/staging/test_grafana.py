"""Grafana for `perfserve staging up`: its settings and provisioning taken from the
project's files with local addresses, and its command found from the binary's layout."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from perfserve.staging.grafana import (
    COMPOSE,
    GRAFANA,
    grafana_command,
    grafana_env,
    grafana_provisioning,
)


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


def _release_archive(root: Path, name: str) -> Path:
    """A Grafana release archive's layout: bin/`name` beside conf/defaults.ini."""
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "defaults.ini").write_text("")
    (root / "bin").mkdir()
    binary = root / "bin" / name
    binary.write_text("")
    return binary


def test_a_release_archives_binary_runs_as_a_server_from_its_own_home(tmp_path: Path) -> None:
    binary = _release_archive(tmp_path / "grafana-12", "grafana")
    assert grafana_command(binary) == [
        str(binary),
        "server",
        "--homepath",
        str((tmp_path / "grafana-12").resolve()),
    ]
    older = _release_archive(tmp_path / "grafana-9", "grafana-server")
    assert grafana_command(older)[1:2] == ["--homepath"]


def test_a_binary_without_grafanas_home_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("perfserve.staging.grafana.PACKAGED_HOME", tmp_path / "nowhere")
    binary = tmp_path / "bin" / "grafana"
    binary.parent.mkdir()
    binary.write_text("")
    with pytest.raises(ValueError, match=r"bin/grafana: no conf/defaults.ini beside it"):
        grafana_command(binary)

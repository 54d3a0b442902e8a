"""`python -m perfserve.staging.prometheus`: the stack's config for services started by hand."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from perfserve.staging.prometheus import local_config, main
from tests.utils import require_tool
from tests.utils.stack import PROMETHEUS_CONFIG


def test_local_config_keeps_everything_but_the_targets() -> None:
    stack = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    local = local_config(
        PROMETHEUS_CONFIG, {"perfserve": ["127.0.0.1:8000", "127.0.0.1:8001"]}, interval="1s"
    )
    jobs = {job["job_name"]: job for job in local["scrape_configs"]}
    assert jobs["perfserve"]["static_configs"] == [
        {"targets": ["127.0.0.1:8000", "127.0.0.1:8001"]}
    ]
    assert "dns_sd_configs" not in jobs["perfserve"]
    # No load generator given: its compose-only DNS names are dropped, not left failing.
    assert "loadgen" not in jobs
    assert jobs["prometheus"] == next(
        job for job in stack["scrape_configs"] if job["job_name"] == "prometheus"
    )
    assert local["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    rule_files = [Path(pattern) for pattern in local["rule_files"]]
    assert all(
        pattern.is_absolute() and list(pattern.parent.glob(pattern.name)) for pattern in rule_files
    )


def test_unknown_job_is_refused() -> None:
    with pytest.raises(ValueError, match="no job"):
        local_config(PROMETHEUS_CONFIG, {"perfservd": ["127.0.0.1:8000"]})


@pytest.mark.integration
def test_command_line_writes_a_config_promtool_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prometheus"
    assert (
        main(
            [
                "--service",
                "127.0.0.1:8000",
                "--loadgen",
                "127.0.0.1:9465",
                "--out",
                str(out),
                "--source",
                str(PROMETHEUS_CONFIG),
            ]
        )
        == 0
    )
    command = capsys.readouterr().out.split()
    assert command[0] == "prometheus"
    assert f"--config.file={out / 'prometheus.yml'}" in command
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {
        "perfserve": ["127.0.0.1:8000"],
        "loadgen": ["127.0.0.1:9465"],
        "prometheus": ["127.0.0.1:9090"],
    }
    promtool = require_tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "config", str(out / "prometheus.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

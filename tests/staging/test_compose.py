"""docker-compose.yml: valid for a real compose implementation, and what it names exists.

No Docker engine runs the stack here; Debian's docker-compose validates the file without
one, and the rest is checked against the files the stack mounts and builds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from perfserve.staging.nginx import CONFIG as NGINX_CONFIG
from service.settings import Settings
from tests.utils import require_tool
from tests.utils.stack import (
    COMPOSE,
    DATASOURCES,
    DOCKERFILE,
    PROMETHEUS_CONFIG,
    ROOT,
)

SECRETS = {"PERFSERVE_ADMIN_TOKEN": "compose-test-token-1c9e", "GRAFANA_ADMIN_PASSWORD": "pw-7d2a"}
PINNED = re.compile(r"^[a-z0-9./-]+:v?\d+\.\d+\.\d+[a-z0-9.-]*(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [require_tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"]
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        command, capture_output=True, text=True, env={**clean, **env}, cwd=ROOT, timeout=60
    )


@pytest.mark.integration
def test_compose_validates() -> None:
    checked = compose_config(SECRETS)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.integration
def test_secrets_come_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    refused = compose_config({})
    assert refused.returncode != 0
    assert "set PERFSERVE_ADMIN_TOKEN" in refused.stderr or "GRAFANA" in refused.stderr
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if not re.search(r"TOKEN|PASSWORD|SECRET|KEY", key):
                continue
            if key.endswith("_FILE"):  # a secret mounted as a file, not its value
                assert str(value).startswith("/run/secrets/"), f"{name}: {key} is not a secret"
            else:
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"


def test_the_service_is_locked_down_and_gets_its_token_as_a_file(
    services: dict[str, dict[str, Any]],
) -> None:
    """As deploy/base runs it: read-only root, no capabilities, no new privileges, one
    pod's size, and the admin token a secret file, not an environment variable."""
    compose = yaml.safe_load(COMPOSE.read_text())
    service = services["service"]
    assert service["read_only"] is True
    assert [mount.split(":")[0] for mount in service["tmpfs"]] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["cpus"] == 1 and service["mem_limit"] == "384m"
    assert 0 < service["pids_limit"] <= 1024
    environment = service["environment"]
    assert "PERFSERVE_ADMIN_TOKEN" not in environment
    (secret,) = service["secrets"]
    assert environment["PERFSERVE_ADMIN_TOKEN_FILE"] == f"/run/secrets/{secret}"
    source = compose["secrets"][secret]["file"]
    assert source == "./.admin-token" and ".admin-token" in (ROOT / ".gitignore").read_text()


def test_images_are_pinned_or_built_here(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert (ROOT / build["context"] / "Dockerfile").is_file(), name
            stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
            assert build["target"] in stages, f"{name}: no stage {build['target']}"
        else:
            assert PINNED.match(service["image"]), f"{name}: {service['image']} is not pinned"


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    dockerfile_checks = "\nHEALTHCHECK " in (ROOT / "Dockerfile").read_text()
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # a one-shot job, such as a sweep
        own = service.get("healthcheck", {})
        assert not own.get("disable"), name
        assert own.get("test") or ("build" in service and dockerfile_checks), name


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_every_replica_follows_one_split_file(services: dict[str, dict[str, Any]]) -> None:
    """The split file lives on a named volume that every replica of `service` mounts."""
    compose = yaml.safe_load(COMPOSE.read_text())
    service = services["service"]
    split_file = PurePosixPath(service["environment"]["PERFSERVE_SPLIT_FILE"])
    mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
    shared = [source for source, target in mounts.items() if target == str(split_file.parent)]
    assert shared and shared[0] in compose["volumes"]
    assert str(split_file.parent) in (ROOT / "Dockerfile").read_text()


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every host"


def test_dependencies_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in services, name
            assert condition == {"condition": "service_healthy"}, name


def test_service_names_match_prometheus_and_nginx(services: dict[str, dict[str, Any]]) -> None:
    """Prometheus and nginx address replicas by compose service name and port."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for job in config["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            for host in discovery["names"]:
                assert host in services, f"{job['job_name']} looks up {host}"
    service_job = next(j for j in config["scrape_configs"] if j["job_name"] == "perfserve")
    port = service_job["dns_sd_configs"][0]["port"]
    assert str(port) in services["service"]["expose"]
    assert f"server service:{port};" in NGINX_CONFIG.read_text()
    assert "listen 8080;" in NGINX_CONFIG.read_text()
    assert services["lb"]["ports"] == ["127.0.0.1:8000:8080"]
    assert "container_name" not in services["service"]  # --scale needs unnamed replicas


def test_grafana_reads_the_stacks_prometheus(services: dict[str, dict[str, Any]]) -> None:
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    # $__rate_interval is four times this: it must be the real scrape interval.
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape


def test_replicas_get_their_whole_shutdown_grace(services: dict[str, dict[str, Any]]) -> None:
    # uvicorn's wait for open requests, then the batchers' shared period: twice the grace.
    grace = Settings.model_fields["graceful_shutdown_s"].default
    assert "PERFSERVE_GRACEFUL_SHUTDOWN_S" not in services["service"].get("environment", {})
    stop = services["service"]["stop_grace_period"]
    assert stop.endswith("s") and float(stop[:-1]) > 2 * grace

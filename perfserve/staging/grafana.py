"""The staging stack's Grafana (grafana/ and compose's settings), run on this machine.

Compose mounts grafana/provisioning at /etc/grafana/provisioning and sets Grafana's
options in its environment. Here the same provisioning is rendered into a folder of the
caller's with the datasource pointed at a local Prometheus and the dashboards' folder at
the project's own; compose's settings are kept, with this machine's paths and address
and a fresh admin password instead of the one compose reads from `.env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from perfserve_common.token_file import new_secret_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
"""Where Grafana's settings come from (its service's `environment`)."""
GRAFANA = ROOT / "grafana"
BINARIES = ("grafana", "grafana-server")
"""The release archive's and the Debian/RPM packages' `grafana`, and older releases' name."""
PACKAGED_HOME = Path("/usr/share/grafana")
READY_PATH = "/api/health"


def grafana_command(binary: Path) -> list[str]:
    """The command that runs `binary` as a server; raises ValueError when Grafana's home
    (the folder holding conf/defaults.ini) is neither beside its bin/ folder, as in a
    release archive, nor PACKAGED_HOME, as in the Debian and RPM packages."""
    command = [str(binary), *(["server"] if binary.name == "grafana" else [])]
    for home in (binary.resolve().parent.parent, PACKAGED_HOME):
        if (home / "conf" / "defaults.ini").is_file():
            return [*command, "--homepath", str(home)]
    raise ValueError(f"{binary}: no conf/defaults.ini beside it or in {PACKAGED_HOME}")


def grafana_env(workdir: Path, prometheus_url: str, port: int) -> dict[str, str]:
    """Grafana's settings: compose's (anonymous read-only viewers, no sign-up, the
    perfserve dashboard as home) with this machine's paths and addresses, provisioning
    rendered into `workdir`, and a fresh admin password, kept in `workdir`/admin-password
    (mode 0600) for signing in."""
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["environment"]
    env = {key: str(value) for key, value in compose.items() if "PASSWORD" not in key}
    password = new_secret_file(workdir / "admin-password").read_text().strip()
    return {
        **env,
        "GF_SECURITY_ADMIN_PASSWORD": password,
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": str(GRAFANA / "dashboards" / "perfserve.json"),
        "GF_PATHS_PROVISIONING": str(
            grafana_provisioning(workdir / "provisioning", prometheus_url)
        ),
        "GF_PATHS_DATA": str(workdir / "data"),
        "GF_PATHS_LOGS": str(workdir / "logs"),
        "GF_PATHS_PLUGINS": str(workdir / "plugins"),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(port),
    }


def grafana_provisioning(out: Path, prometheus_url: str) -> Path:
    """grafana/provisioning with compose's addresses replaced: every datasource's URL by
    `prometheus_url`, the dashboards' folder by the project's grafana/dashboards."""
    for kind in ("datasources", "dashboards"):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for source in sorted((GRAFANA / "provisioning" / kind).glob("*.yml")):
            config: dict[str, Any] = yaml.safe_load(source.read_text())
            for datasource in config.get("datasources", []):
                datasource["url"] = prometheus_url
            for provider in config.get("providers", []):
                provider["options"]["path"] = str(GRAFANA / "dashboards")
            (out / kind / source.name).write_text(yaml.safe_dump(config, sort_keys=False))
    return out

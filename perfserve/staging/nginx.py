"""The staging stack's load balancer (nginx/nginx.conf), run on this machine.

nginx resolves `service` only inside compose. Here the replicas' name becomes loopback
addresses, the listening port a free one and the temporary paths a folder of the
caller's; every other line is the project's own.

`Shedding` adds the balancer's own admission in front of the replicas, to compare with
letting each replica refuse what it cannot serve (`perfserve bench-overload
--load-balancer`): `limit-conn N` lets at most N requests through at once, `limit-req R`
at most R a second (with a burst of a tenth of a second); nginx answers the rest itself
with a 503 and `Retry-After: 1`, like a replica's own refusal. A replica's 503 passes
through unchanged (nginx intercepts only its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perfserve_common.processes import free_port, running_process

CONFIG = Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf"
SHEDDING_KINDS = ("limit-conn", "limit-req")
READY_PATH = "/readyz"
"""Answers 200 through nginx once a replica behind it is ready."""
BURST_S = 0.1
SHED_LOCATION = """
        location @shed {
            add_header Retry-After 1 always;
            default_type application/json;
            return 503 '{"detail": "the load balancer is at its limit; retry shortly"}';
        }
"""


@dataclass(frozen=True)
class Shedding:
    kind: str
    """One of `SHEDDING_KINDS`."""
    limit: float
    """Requests in flight (limit-conn) or per second (limit-req)."""

    def directives(self) -> tuple[str, str]:
        """What goes in the `http` block (the shared zone) and in `location /`. The key is
        the listening port: one count for the whole balancer, not one per client."""
        if self.kind == "limit-conn":
            zone = "limit_conn_zone $server_port zone=replicas:1m;"
            rule = f"limit_conn replicas {round(self.limit)};\n            limit_conn_status 503;"
        else:
            zone = f"limit_req_zone $server_port zone=replicas:1m rate={round(self.limit)}r/s;"
            burst = max(1, round(self.limit * BURST_S))
            rule = (
                f"limit_req zone=replicas burst={burst} nodelay;\n            limit_req_status 503;"
            )
        return zone, f"{rule}\n            error_page 503 @shed;"


def local_config(
    upstreams: Sequence[str], listen: str, workdir: Path, shedding: Shedding | None = None
) -> Path:
    """The project's nginx.conf in `workdir`, in front of `upstreams`, on `listen`."""
    text = CONFIG.read_text()
    servers = "\n".join(f"        server {address};" for address in upstreams)
    text = _replace_once(text, "        server service:8000;", servers)
    text = _replace_once(text, "listen 8080;", f"listen {listen};").replace("/tmp/", f"{workdir}/")
    if shedding is not None:
        zone, rule = shedding.directives()
        text = _replace_once(
            text, "    upstream perfserve {", f"    {zone}\n\n    upstream perfserve {{"
        )
        text = _replace_once(
            text, "        location / {", f"        location / {{\n            {rule}"
        )
        text = _replace_once(text, f"listen {listen};\n", f"listen {listen};\n{SHED_LOCATION}")
    path = workdir / "nginx.conf"
    path.write_text(text)
    return path


@contextmanager
def running_nginx(
    upstreams: Sequence[str],
    workdir: Path,
    shedding: Shedding | None = None,
    cpus: str | None = None,
) -> Iterator[str]:
    """nginx from the project's config in front of `upstreams`, pinned to `cpus` if
    given; yields its base URL once a replica answers through it."""
    listen = f"127.0.0.1:{free_port()}"
    command = nginx_command(local_config(upstreams, listen, workdir, shedding), workdir)
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    with running_process(command, f"http://{listen}{READY_PATH}"):
        yield f"http://{listen}"


def nginx_command(config: Path, workdir: Path) -> list[str]:
    """nginx in the foreground on `config` (from `local_config`), its errors on stderr:
    the caller owns the process and its output."""
    return ["nginx", "-e", "stderr", "-c", str(config), "-p", str(workdir), "-g", "daemon off;"]


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{CONFIG} should hold {old.strip()!r} exactly once")
    return text.replace(old, new)

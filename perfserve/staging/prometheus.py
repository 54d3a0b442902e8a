"""The staging stack's Prometheus config, pointed at services started by hand.

`prometheus/prometheus.yml` finds the service and the load generators by DNS, which only
answers inside docker compose. Without Docker the same jobs, rules and intervals should
scrape addresses on this machine instead, so that what a user sees locally is what the
stack shows. This writes that config, changing the targets and nothing else (tests also
shorten the intervals).

    python -m perfserve.staging.prometheus --service 127.0.0.1:8000 --run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from perfserve_common.processes import free_port, running_process

CONFIG = Path("prometheus/prometheus.yml")
PROJECT_CONFIG = Path(__file__).resolve().parents[2] / CONFIG
"""The same file wherever the command runs from."""
SELF_JOB = "prometheus"
READY_PATH = "/-/ready"


def local_config(
    source: Path, targets: Mapping[str, Sequence[str]], interval: str | None = None
) -> dict[str, Any]:
    """`source` with each job in `targets` scraping those addresses.

    Jobs that find their targets by DNS and are not in `targets` are dropped: their
    names (`service`, `locust-worker`) exist only inside compose. Rule files become
    absolute, so the config works from any folder. `interval`, if given, replaces the
    scrape and evaluation intervals.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"{source} has no job(s) {sorted(unknown)}")
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        discovered = [key for key in job if key.endswith("_sd_configs")]
        if name in targets:
            for key in [*discovered, "static_configs"]:
                job.pop(key, None)
            job["static_configs"] = [{"targets": list(targets[name])}]
        elif discovered:
            continue
        jobs.append(job)
    config["scrape_configs"] = jobs
    config["rule_files"] = [
        str((source.parent / pattern).resolve()) for pattern in config.get("rule_files", [])
    ]
    if interval is not None:
        for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
            config["global"][key] = interval
    return config


def write_local_config(
    out: Path,
    targets: Mapping[str, Sequence[str]],
    *,
    source: Path = CONFIG,
    interval: str | None = None,
) -> Path:
    """Write `local_config(...)` as `out/prometheus.yml` and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(local_config(source, targets, interval), sort_keys=False))
    return path


@contextmanager
def running_prometheus(
    targets: Mapping[str, Sequence[str]],
    workdir: Path,
    interval: str = "1s",
    source: Path = PROJECT_CONFIG,
    cpus: str | None = None,
) -> Iterator[str]:
    """The project's Prometheus config and rules (or `source`'s) on a free loopback port,
    scraping `targets` (job name to addresses) every `interval`; yields its base URL.
    `cpus` pins it with taskset, so that a benchmark keeps it off the server's core."""
    listen = f"127.0.0.1:{free_port()}"
    command = local_prometheus(targets, workdir, listen, interval, source)
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    with running_process(command, f"http://{listen}{READY_PATH}"):
        yield f"http://{listen}"


def local_prometheus(
    targets: Mapping[str, Sequence[str]],
    workdir: Path,
    listen: str,
    interval: str | None = None,
    source: Path = PROJECT_CONFIG,
) -> list[str]:
    """The command that runs Prometheus on `listen` with the project's config (its own job
    scraping itself) and rules, or `source`'s, scraping `targets`; config and data in
    `workdir`."""
    config = write_local_config(
        workdir, {**targets, SELF_JOB: [listen]}, source=source, interval=interval
    )
    return prometheus_command(config, workdir / "data", listen)


def prometheus_command(config: Path, data: Path, listen: str) -> list[str]:
    """The command that runs Prometheus on `config`, storing its data in `data`."""
    return [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={listen}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfserve.staging.prometheus",
        description="Write the staging Prometheus config for services on this machine "
        "(run from the project folder), and optionally start Prometheus on it.",
    )
    parser.add_argument(
        "--service",
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="a perfserve serve to scrape (repeat for several)",
    )
    parser.add_argument(
        "--loadgen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a load generator's metrics port (a Locust run or perfserve sweep: 9465)",
    )
    parser.add_argument("--listen", default="127.0.0.1:9090", help="Prometheus's own address")
    parser.add_argument("--out", type=Path, default=Path(".prometheus"), help="config folder")
    parser.add_argument("--source", type=Path, default=CONFIG, help="the stack's config")
    parser.add_argument("--run", action="store_true", help="start Prometheus on the config")
    args = parser.parse_args(argv)

    targets = {"perfserve": args.service, SELF_JOB: [args.listen]}
    if args.loadgen:
        targets["loadgen"] = args.loadgen
    config = write_local_config(args.out, targets, source=args.source)
    command = prometheus_command(config, args.out / "data", args.listen)
    if not args.run:
        print(" ".join(command))
        return 0
    if shutil.which(command[0]) is None:
        print("prometheus is not installed (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())

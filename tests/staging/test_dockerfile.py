"""The Dockerfile: slim, multi-stage, non-root, and built from the README's commands.

No Docker engine runs here, so the image's own commands are run instead: its build
step writes a store, its CMD serves that store with the image's environment, and its
HEALTHCHECK says healthy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

from common.processes import ServerProcess, free_port, wait_ready
from service.store import load_manifest
from tests.utils.stack import COMPOSE, DOCKERFILE, README, ROOT

VENV_BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def last_stage() -> list[tuple[str, str]]:
    steps = instructions()
    start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[start:]


def first_stage() -> list[tuple[str, str]]:
    steps = instructions()
    return steps[: max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")]


def exec_form(arguments: str) -> list[str]:
    command: list[str] = json.loads(arguments)
    return command


def readme_commands() -> set[str]:
    """Indented command lines of the README, without trailing comments."""
    lines = README.read_text().splitlines()
    return {line.split("  #")[0].strip() for line in lines if line.startswith("    ")}


def image_environment(port: int) -> dict[str, str]:
    """The runtime stage's ENV, with the image's virtualenv mapped to this one.

    The host is kept on loopback: a test listens on this machine only.
    """
    env = dict(os.environ)
    for keyword, arguments in last_stage():
        if keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                env[name] = value.replace("/opt/venv/bin", str(VENV_BIN)).replace(
                    "$PATH", os.environ["PATH"]
                )
    env.update(PERFSERVE_HOST="127.0.0.1", PERFSERVE_PORT=str(port))
    return env


def test_image_is_multi_stage_slim_pinned_and_non_root() -> None:
    steps = instructions()
    base = next(arguments for keyword, arguments in steps if keyword == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+", base)
    assert [a for k, a in steps if k == "FROM"] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    final = last_stage()
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    copies = [arguments for keyword, arguments in final if keyword == "COPY"]
    assert copies and all(arguments.startswith("--from=build ") for arguments in copies)


def test_every_package_of_the_project_is_copied_into_the_build() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, f"{source} is copied but .dockerignore drops it"
                copied.add(source)
    assert packages <= copied
    assert {"pyproject.toml", "README.md"} <= copied


def test_build_and_run_steps_are_the_readme_commands() -> None:
    documented = readme_commands()
    runs = [arguments for keyword, arguments in instructions() if keyword == "RUN"]
    perfserve_runs = [run for run in runs if run.startswith("perfserve ")]
    assert perfserve_runs == ["perfserve build"]
    assert set(perfserve_runs) <= documented
    assert "pip install ." in runs
    command = exec_form(next(a for k, a in last_stage() if k == "CMD"))
    assert command == ["perfserve", "serve"]
    assert any(line.startswith(" ".join(command)) for line in documented)


@pytest.mark.integration
def test_the_images_commands_build_serve_and_pass_the_healthcheck(tmp_path: Path) -> None:
    port = free_port()
    env = image_environment(port)
    build = next(a for k, a in instructions() if k == "RUN" and a.startswith("perfserve "))
    built = subprocess.run(
        shlex.split(build), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    assert load_manifest(tmp_path / "model_store").variants

    command = exec_form(next(a for k, a in last_stage() if k == "CMD"))
    healthcheck = next(a for k, a in last_stage() if k == "HEALTHCHECK")
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server, timeout_s=60)
        probed = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert probed.returncode == 0, probed.stderr
    finally:
        assert server.stop() == 0, server.log()
    probed = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert probed.returncode != 0  # and unhealthy once the server is gone


def test_the_locustfile_is_where_the_compose_commands_look() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    wanted = set()
    for name in ("locust-master", "locust-worker"):
        command = services[name]["command"]
        wanted.add(command[command.index("-f") + 1])
    placed, workdir = set(), "/"
    for keyword, arguments in first_stage():
        if keyword == "WORKDIR":
            workdir = arguments
        elif keyword == "COPY":
            *sources, destination = arguments.split()
            target = PurePosixPath(workdir, destination)
            for source in sources:
                into = destination.endswith("/")
                placed.add(target / PurePosixPath(source).name if into else target)
    runtime_workdir = [a for k, a in last_stage() if k == "WORKDIR"][-1]
    assert ("COPY", f"--from=build {runtime_workdir} {runtime_workdir}") in last_stage()
    for path in wanted:
        assert (ROOT / path).is_file()
        assert PurePosixPath(runtime_workdir, path) in placed, f"{path} is not in the image"

"""The Dockerfile: multi-stage, slim, pinned, non-root, and built from the documented commands.

No Docker engine runs here, so the image's own commands are run instead: its build
step writes a store, its CMD serves that store with the image's environment, and its
HEALTHCHECK says healthy. What each stage installs is read from its RUN lines: the
runtime ships the serving install only, every install takes the tested versions.
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

from perfserve.staging.constraints import closure
from perfserve_common.processes import ServerProcess, free_port, wait_ready
from service.store import load_manifest
from tests.utils.stack import COMPOSE, DOCKERFILE, ROOT

VENV_BIN = Path(sys.executable).parent
Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def stages() -> dict[str, list[Instruction]]:
    """Each named stage's instructions, FROM first, in file order."""
    found: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            current = []
            found[arguments.split(" AS ")[1]] = current
        current.append((keyword, arguments))
    return found


def argument(stage: list[Instruction], keyword: str) -> list[str]:
    return [arguments for k, arguments in stage if k == keyword]


def exec_form(arguments: str) -> list[str]:
    command: list[str] = json.loads(arguments)
    return command


SERVING_GUIDE = ROOT / "docs" / "serving.md"


def documented_commands() -> set[str]:
    """Indented command lines of the serving guide, without trailing comments."""
    lines = SERVING_GUIDE.read_text().splitlines()
    return {line.split("  #")[0].strip() for line in lines if line.startswith("    ")}


def image_environment(port: int) -> dict[str, str]:
    """The runtime stage's ENV, with the image's virtualenv mapped to this one.

    The host is kept on loopback: a test listens on this machine only.
    """
    env = dict(os.environ)
    for assignment in shlex.split(" ".join(argument(stages()["runtime"], "ENV"))):
        name, _, value = assignment.partition("=")
        env[name] = value.replace("/opt/venv/bin", str(VENV_BIN)).replace(
            "$PATH", os.environ["PATH"]
        )
    env.update(PERFSERVE_HOST="127.0.0.1", PERFSERVE_PORT=str(port))
    return env


def test_images_are_multi_stage_slim_pinned_by_digest_and_non_root() -> None:
    base = next(arguments for keyword, arguments in instructions() if keyword == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base)
    found = stages()
    assert list(found)[-1] == "runtime"  # the default target: `docker build .` serves
    for name in ("runtime", "loadtest"):
        stage = found[name]
        assert stage[0][1] == f"${{PYTHON_IMAGE}} AS {name}"
        users = argument(stage, "USER")
        assert users and users[-1] not in {"root", "0"}
        assert all(copy.startswith("--from=") for copy in argument(stage, "COPY"))


def test_the_runtime_ships_the_serving_install_and_the_store_only() -> None:
    found = stages()
    copies = [copy.split() for copy in argument(found["runtime"], "COPY")]
    assert sorted(source for _, source, _ in copies) == ["/opt/perfserve", "/opt/venv"]
    assert {origin for origin, _, _ in copies} == {"--from=build"}
    installs = {
        match.group(1): match.group(2)
        for run in argument(found["build"], "RUN")
        if (match := re.search(r"(/opt/\w+)/bin/pip install .* (\S+)$", run))
    }
    assert installs == {"/opt/venv": ".", "/opt/tools": "'.[build]'"}
    assert "ENV PATH=/opt/tools/bin:$PATH" in [f"{k} {a}" for k, a in found["build"]]


def test_every_install_takes_the_tested_versions() -> None:
    runs = [run for stage in stages().values() for run in argument(stage, "RUN")]
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 3
    assert all("pip install --constraint constraints.txt " in run for run in installs)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    assert all(pins.values()), "every line pins one version"
    missing = set(closure()) - set(pins)
    assert not missing, f"constraints.txt lacks {sorted(missing)}: run make constraints"


def test_every_package_of_the_project_is_copied_into_the_build() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {  # the top-level packages the patterns take from this checkout
        path.parent.name for pattern in patterns for path in ROOT.glob(f"{pattern}/__init__.py")
    }
    assert {"perfserve", "perfserve_common", "service", "loadtests"} <= packages
    copied = set()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for copy in argument(stages()["source"], "COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored, f"{source} is copied but .dockerignore drops it"
            copied.add(source)
    assert packages <= copied
    assert {"pyproject.toml", "README.md", "constraints.txt"} <= copied


def test_build_and_run_steps_are_the_documented_commands() -> None:
    documented = documented_commands()
    runs = [arguments for keyword, arguments in instructions() if keyword == "RUN"]
    perfserve_runs = [run for run in runs if run.startswith("perfserve ")]
    assert perfserve_runs == ["perfserve build"]
    assert set(perfserve_runs) <= documented
    command = exec_form(argument(stages()["runtime"], "CMD")[-1])
    assert command == ["perfserve", "serve"]
    assert any(line.startswith(" ".join(command)) for line in documented)


@pytest.mark.integration
def test_the_images_commands_build_serve_and_pass_the_healthcheck(tmp_path: Path) -> None:
    port = free_port()
    env = image_environment(port)
    built = subprocess.run(
        shlex.split(argument(stages()["build"], "RUN")[-1]),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert load_manifest(tmp_path / "model_store").variants

    runtime = stages()["runtime"]
    command = exec_form(argument(runtime, "CMD")[-1])
    probe = exec_form(argument(runtime, "HEALTHCHECK")[-1].split(" CMD ", 1)[1])
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
        assert services[name]["build"]["target"] == "loadtest"
        command = services[name]["command"]
        wanted.add(command[command.index("-f") + 1])
    found = stages()
    placed, workdir = set(), "/"
    for keyword, arguments in found["loadtest-build"]:
        if keyword == "WORKDIR":
            workdir = arguments
        elif keyword == "COPY":
            *sources, destination = arguments.split()
            target = PurePosixPath(workdir, destination)
            for source in sources:
                into = destination.endswith("/")
                placed.add(target / PurePosixPath(source).name if into else target)
    workdir = argument(found["loadtest"], "WORKDIR")[-1]
    assert f"--from=loadtest-build {workdir} {workdir}" in argument(found["loadtest"], "COPY")
    for path in wanted:
        assert (ROOT / path).is_file()
        assert PurePosixPath(workdir, path) in placed, f"{path} is not in the image"

"""The plain install serves: a fresh virtualenv with `pip install perfserve` and nothing else.

This is what the runtime image holds. It must start `perfserve serve` on a store, answer
/predict and /metrics, import none of the tools (model building, Locust, gevent,
matplotlib, httpx) on the way, and name the extra a tool command needs instead of
failing with a traceback. Every command the image is documented to run (the
Dockerfile's CMD and HEALTHCHECK, the staging guide's `docker compose exec service ...`) runs
in it. pip's cache makes the install a matter of seconds after the first run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfserve_common.processes import ServerProcess, free_port, wait_ready
from service.store import Dataset
from tests.utils import ADMIN, ADMIN_TOKEN, body
from tests.utils.stack import DOCKERFILE, ROOT

pytestmark = pytest.mark.slow

# Imported by the tools only; scikit-learn, onnxruntime and their own dependencies
# (scipy among them) stay.
TOOLS = ("skl2onnx", "onnx", "locust", "gevent", "matplotlib", "hdrh", "httpx")
TOOL_MODULES = re.compile(rf"^({'|'.join(TOOLS)}|onnxruntime\.quantization)(\.|$)")


STAGING_GUIDE = ROOT / "docs" / "staging.md"
NOT_SOURCES = (".*", "build", "dist", "*.egg-info", "model_store", "reports", "__pycache__")


@pytest.fixture(scope="module", autouse=True)
def no_checkout_on_the_path() -> Iterator[None]:
    """The processes started here run the installed package: a PYTHONPATH naming the
    checkout (as a development shell sets it) would shadow it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONPATH", raising=False)
        yield


@pytest.fixture(scope="module")
def serving_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtualenv holding the serving install (tested versions)."""
    where = tmp_path_factory.mktemp("serving") / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    # Built from a copy of the sources: pip builds in the source tree, and a checkout's
    # build/ folder could carry files of an earlier build into the wheel.
    source = tmp_path_factory.mktemp("source") / "perfserve"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install += ["--constraint", str(ROOT / "constraints.txt"), str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    home = tmp_path_factory.mktemp("elsewhere")
    found = subprocess.run(
        [str(python), "-c", "import service; print(service.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=home,
    )
    assert found.stdout.startswith(str(where)), "the installed package, not the checkout"
    return python


def imported_modules(python: Path, cwd: Path, *args: str) -> set[str]:
    """Modules a run of `python -X importtime ARGS` imported (its report on stderr)."""
    run = subprocess.run(
        [str(python), "-X", "importtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,  # never the checkout: its sources would shadow the installed package
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def test_the_serving_install_has_none_of_the_tools(serving_python: Path, tmp_path: Path) -> None:
    probe = "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]))"
    for tool in TOOLS:
        found = subprocess.run(
            [str(serving_python), "-c", probe, tool],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert found.stdout.strip() == "None", tool


def test_serve_imports_the_service_and_no_tool(serving_python: Path, store: Path) -> None:
    modules = imported_modules(serving_python, store.parent, "-m", "perfserve", "serve", "--help")
    # (importlib.import_module's own module is not in the report; what it imports is.)
    assert {"perfserve.cli", "service.settings", "service.store"} <= modules
    # Building the app imports the whole serving path (runtimes, metrics, routing).
    modules |= imported_modules(
        serving_python, store.parent, "-c", "from service.app import create_app; create_app()"
    )
    assert {"onnxruntime", "sklearn", "service.runtimes"} <= modules
    assert sorted(m for m in modules if TOOL_MODULES.match(m)) == []


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["sweep", "--url", "http://127.0.0.1:9"], "loadtest"),  # its module needs Locust
        (["build", "--store", "unused"], "build"),  # imports skl2onnx only when it runs
    ],
)
def test_a_tool_command_names_its_extra(
    serving_python: Path, tmp_path: Path, argv: list[str], extra: str
) -> None:
    run = subprocess.run(
        [str(serving_python), "-m", "perfserve", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 4, run.stderr  # the environment lacks something
    assert run.stderr.strip().endswith(f"pip install 'perfserve[{extra}]'"), run.stderr


def test_serves_predictions_and_metrics(
    serving_python: Path, store: Path, holdout: Dataset, tmp_path: Path
) -> None:
    port = free_port()
    command = [str(serving_python), "-m", "perfserve", "serve", "--store", str(store)]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server, timeout_s=120)
        answer = httpx.post(f"{server.url}/predict", json=body(holdout.features[:3]))
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 3
        metrics = text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
        answered = [
            sample.value
            for family in metrics
            for sample in family.samples
            if sample.name == "perfserve_request_duration_seconds_count"
            and sample.labels.get("status") == "200"
        ]
        assert sum(answered) == 1
        # The split tool of the staging stack runs inside the serving image too.
        shown = subprocess.run(
            [str(serving_python), "-m", "perfserve.staging.traffic", "--url", server.url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert shown.returncode == 0 and "weights=" in shown.stdout, shown.stderr
    finally:
        assert server.stop() == 0, server.log()


def documented_commands() -> list[list[str]]:
    """The staging guide's `docker compose exec service ...` commands (its code blocks), as
    argument lists."""
    text = STAGING_GUIDE.read_text().replace("\\\n", " ")
    found = re.findall(r"^ {4}docker compose exec service (.+)", text, re.MULTILINE)
    return [shlex.split(line.split("#", 1)[0]) for line in found]


def healthcheck() -> list[str]:
    """The Dockerfile's HEALTHCHECK command."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    command: list[str] = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[.*\])", text)[1])  # type: ignore[index]
    return command


def test_every_command_the_image_documents_runs_in_the_serving_install(
    serving_python: Path, store: Path, tmp_path: Path
) -> None:
    documented = documented_commands()
    assert {tuple(c[:2]) for c in documented} == {("python", "-m"), ("perfserve", "rollout")}
    port = free_port()
    bin_folder = serving_python.parent
    token = tmp_path / "admin-token"  # as compose mounts it: a secret file
    token.write_text(ADMIN_TOKEN + "\n")
    env = {**os.environ, "PATH": f"{bin_folder}:{os.environ['PATH']}"}
    env.pop("PERFSERVE_ADMIN_TOKEN", None)
    env["PERFSERVE_ADMIN_TOKEN_FILE"] = str(token)
    env.update({"PERFSERVE_PORT": str(port), "PERFSERVE_SPLIT_FILE": str(tmp_path / "t.json")})
    log = tmp_path / "serve.log"
    with log.open("wb") as output:  # the image's CMD, with its store in the working folder
        process = subprocess.Popen(
            ["perfserve", "serve", "--store", str(store)],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server, timeout_s=120)
        for command in [healthcheck(), *documented]:
            command = [server.url if arg == "http://service:8000" else arg for arg in command]
            if command[:2] == ["perfserve", "rollout"]:
                # A short dry run: with no traffic its one step is inconclusive and pauses.
                command += ["--steps", "50", "--window-seconds", "1", "--max-extensions", "0"]
                command += ["--dry-run"]
            if command[:3] == ["python", "-m", "perfserve.staging.traffic"]:
                command += ["--url", server.url]
            run = subprocess.run(
                command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
            )
            assert "Traceback" not in run.stderr, (command, run.stderr)
            expected = (0, 3) if command[0] == "perfserve" else (0,)
            assert run.returncode in expected, (command, run.stdout, run.stderr)
            if command[0] == "perfserve":
                assert "step 1" in run.stdout, run.stdout
                httpx.post(f"{server.url}/rollout/abort", headers=ADMIN)
    finally:
        assert server.stop() == 0, server.log()

"""Start a competitor server on loopback, pinned like perfserve, for `bench-http`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from perfserve_common.processes import free_port
from perfserve_common.usage import MissingTool, UsageError

REPOSITORY = Path(__file__).resolve().parents[3]
# The competitor apps stay in the repository, outside the installed package: their
# frameworks are not perfserve dependencies, and a serving install has no use for them.
APPS = REPOSITORY / "competitors"
NAMES = ("naive-fastapi", "litserve", "mlserver", "bentoml")


@dataclass(frozen=True)
class RunningCompetitor:
    url: str
    body: bytes


@contextmanager
def competitor(
    name: str, python: str, model: Path, row: list[float], cpus: str
) -> Iterator[RunningCompetitor]:
    """Serve `model` (ONNX) with the named framework's server, using `python`'s packages."""
    if not APPS.is_dir():
        raise MissingTool(f"competitor apps not found at {APPS}: run bench-http from a checkout")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    env = {**os.environ, "PERFSERVE_MODEL": str(model.resolve())}
    body = json.dumps({"instances": [row]}).encode()
    path = "/predict"
    if name == "naive-fastapi":
        command = [python, "-m", "uvicorn", "competitors.naive_fastapi:app"]
        command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    elif name == "litserve":
        command = [python, str(APPS / "litserve_app.py"), str(model.resolve()), str(port)]
    elif name == "mlserver":
        mlserver = str(Path(python).with_name("mlserver"))  # the package has no __main__
        command, path = [mlserver, "start", str(workdir)], "/v2/models/onnx/infer"
        _mlserver_settings(workdir, model, port)
        body = json.dumps(
            {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
        ).encode()
    elif name == "bentoml":
        command = [
            python,
            "-m",
            "bentoml",
            "serve",
            "competitors.bentoml_service:OnnxService",
        ]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        env["BENTOML_HOME"] = str(workdir)
    else:
        raise UsageError(f"unknown competitor {name!r}; known: {', '.join(NAMES)}")
    log = workdir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", cpus, *command],
            cwd=REPOSITORY,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers too are stopped with the group
        )
    url = f"http://127.0.0.1:{port}{path}"
    try:
        _wait_until_answering(url, body, process, log)
        yield RunningCompetitor(url, body)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _mlserver_settings(workdir: Path, model: Path, port: int) -> None:
    grpc_port = next(p for p in iter(free_port, None) if p != port)
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port}
    # No separate metrics server: one fewer port, and the others run without one too.
    settings |= {"metrics_endpoint": None, "parallel_workers": 0, "debug": False}
    (workdir / "settings.json").write_text(json.dumps(settings))
    model_dir = workdir / "onnx"
    model_dir.mkdir()
    shutil.copy(APPS / "mlserver_runtime.py", model_dir)
    model_settings = {
        "name": "onnx",
        "implementation": "mlserver_runtime.OnnxRuntime",
        "max_batch_size": 64,
        "max_batch_time": 0.002,
        "parameters": {"uri": str(model.resolve())},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))


def _wait_until_answering(
    url: str, body: bytes, process: subprocess.Popen[bytes], log: Path
) -> None:
    headers = {"content-type": "application/json"}
    for _ in range(600):
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise UsageError(f"the competitor server exited with {process.returncode}:\n{tail}")
        try:
            if httpx.post(url, content=body, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise UsageError(f"the competitor server at {url} did not answer within 60 s")

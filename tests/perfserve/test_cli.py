"""The command line as a newcomer meets it: help without arguments, a version, and every
mistake answered by one line that names the option, the bad value and what is allowed,
with exit status 2 and never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from perfserve.cli import COMMANDS
from tests.utils import run_perfserve

STORE = "{store}"  # replaced by the session's model store
UNUSED_URL = "http://127.0.0.1:9"  # the discard port: nothing answers there

# (subcommand, arguments, environment, words the one line must contain)
BAD_INVOCATIONS: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    ("serve", ["--traffic", "sklearn_fp32=0.9,onnx_int9=0.1"], {}, ["--traffic", "onnx_int9"]),
    ("serve", ["--shadow", "onnx_int9"], {}, ["--shadow", "onnx_int9", "onnx_fp32"]),
    (
        "serve",
        ["--variants", "onnx_fp32", "--traffic", "sklearn_fp32=1"],
        {},
        ["--traffic", "sklearn_fp32", "onnx_fp32"],
    ),
    ("serve", ["--variants", "onnx_int9"], {}, ["--variants", "onnx_int9", "sklearn_fp32"]),
    ("serve", ["--inference", "threads"], {}, ["--inference", "'threads'", "'thread'"]),
    ("serve", ["--port", "abc"], {}, ["--port", "'abc'", "integer"]),
    ("serve", ["--port", "70000"], {}, ["--port", "65535"]),
    (
        "serve",
        ["--admin-token", "long-enough-1234"],
        {},
        ["--admin-token", "PERFSERVE_ADMIN_TOKEN"],
    ),
    ("serve", [], {"PERFSERVE_ADMIN_TOKEN": "short"}, ["12 characters"]),
    ("serve", ["--traffic", "x"], {}, ["--traffic", "'x'", "name=weight"]),
    ("serve", ["--max-batch-size", "0"], {}, ["--max-batch-size", "'0'", "1"]),
    ("serve", [], {"PERFSERVE_PORT": "abc"}, ["PERFSERVE_PORT", "'abc'", "integer"]),
    ("serve", ["--store", "no-such-store"], {}, ["no-such-store", "perfserve build"]),
    ("serve", ["--log-level", "loud"], {}, ["--log-level", "'loud'", "'debug'"]),
    ("serve", ["--bogus"], {}, ["unrecognized arguments: --bogus"]),
    ("build", ["--model", "model.joblib"], {}, ["--model, --data and --target"]),
    ("demo", ["--out"], {}, ["--out", "expected one argument"]),
    ("sweep", [], {}, ["--url"]),
    ("sweep", ["--url", UNUSED_URL, "--rates", "abc"], {}, ["--rates", "'abc'", "100,200,400"]),
    ("sweep", ["--url", UNUSED_URL, "--step-seconds", "-1"], {}, ["--step-seconds", "positive"]),
    ("sweep", ["--url", UNUSED_URL, "--rounds", "0"], {}, ["--rounds", "1 or more"]),
    ("sweep", ["--url", UNUSED_URL], {}, [UNUSED_URL]),
    ("sweep", ["--url", "127.0.0.1:9"], {}, ["--url", "127.0.0.1:9", "http://"]),
    (
        "sweep",
        ["--url", UNUSED_URL],
        {"PERFSERVE_ARRIVALS": "uniform"},
        ["PERFSERVE_ARRIVALS", "'uniform'", "poisson"],
    ),
    (
        "sweep",
        ["--url", UNUSED_URL],
        {"PERFSERVE_STEP_SECONDS": "abc"},
        ["PERFSERVE_STEP_SECONDS", "'abc'", "number"],
    ),
    ("sweep", ["--url", UNUSED_URL, "--engine", "fast"], {}, ["--engine", "'fast'", "native"]),
    ("sweep", ["--url", UNUSED_URL, "--generator-cpus", "99"], {}, ["--generator-cpus", "'99'"]),
    ("bench-http", ["--concurrency", "x"], {}, ["--concurrency", "'x'", "integers"]),
    ("bench-http", ["--baseline-env", "PERFSERVE_DRIFT"], {}, ["--baseline-env", "NAME=VALUE"]),
    ("sweep", ["--url", UNUSED_URL, "--shift", "nope=2"], {}, ["--shift nope", "mean radius"]),
    (
        "sweep",
        ["--url", UNUSED_URL, "--shift", "mean radius=x"],
        {},
        ["--shift", "a finite number"],
    ),
    (
        "sweep",
        ["--url", UNUSED_URL],
        {"PERFSERVE_SHIFT": "mean radius"},
        ["PERFSERVE_SHIFT", "FEATURE=SCALE"],
    ),
    ("bench-cache", ["--bodies", "distinct"], {}, ["--bodies", "zipf:0.5,zipf:0.9"]),
    ("bench-cache", ["--bodies", "zipf:1.5"], {}, ["--bodies", "0 to 0.95"]),
    ("bench-cache", ["--cache-rows", "0"], {}, ["--cache-rows", "1 or more"]),
    ("sweep", ["--url", UNUSED_URL, "--bodies", "zipf"], {}, ["--bodies", "zipf:H"]),
    ("serve", ["--cache-rows", "-1"], {}, ["--cache-rows", "0"]),
    ("bench-overload", ["--case", "onnx_int8:x"], {}, ["--case", "'onnx_int8:x'", "VARIANT"]),
    ("bench-generator", ["--variant", "onnx_int9"], {}, ["--variant", "onnx_int9", "onnx_int8"]),
    (
        "bench-generator",
        ["--host-stalls", "1", "--generator-cpus", "64"],
        {},
        ["--generator-cpus", "'64'"],
    ),
    ("bench-stall", ["--loads", "0.5,2"], {}, ["--loads", "above 0", "1.5"]),
    ("bench", ["--runs", "1"], {}, ["--runs"]),
    ("bench", ["--variants", "onnx_int9"], {}, ["onnx_int9", "sklearn_fp32"]),
    ("bench", ["--batch-sizes", "1,x"], {}, ["--batch-sizes", "'1,x'"]),
    ("bench", ["--dask"], {}, ["--dask", "--dataset"]),
    (
        "build",
        ["--model", "m.joblib", "--data", "d.csv", "--target", "t", "--example", "wide"],
        {},
        ["--example", "--model"],
    ),
    ("robustness", ["--perturbations", "noise,jitter"], {}, ["--perturbations", "jitter", "edge"]),
    ("decide", [], {}, ["--requirements"]),
    ("decide", ["--requirements", "no-such.yaml"], {}, ["no-such.yaml"]),
    ("capacity", ["--peak-qps", "abc"], {}, ["--peak-qps", "'abc'"]),
    ("capacity", ["--peak-qps", "100", "--bench", "no-such-bench"], {}, ["no-such-bench"]),
    ("compare", ["--baseline", "onnx_int9", "--candidate", "onnx_fp32"], {}, ["onnx_int9"]),
    ("history", ["frob"], {}, ["'frob'", "list", "accept"]),
    ("history", ["accept"], {}, ["record id"]),
    ("rollout", ["--baseline", "a", "--candidate", "b", "--steps", "5,1"], {}, ["--steps", "rise"]),
    (
        "rollout",
        ["--baseline", "a", "--candidate", "b", "--url", UNUSED_URL],
        {"PERFSERVE_ADMIN_TOKEN": "a-token-of-16-chars"},
        ["--url", UNUSED_URL],
    ),
    ("staging", [], {}, ["ACTION", "required"]),
    ("staging", ["up", "--replicas", "0"], {}, ["--replicas", "at least 1"]),
    ("staging", ["up", "--store", STORE, "--inject", "onnx_int8:speed=2"], {}, ["'speed'"]),
    (
        "staging",
        ["up", "--store", STORE, "--inject", "onnx_int9:flip-rate=0.1"],
        {},
        ["--inject", "onnx_int9", "onnx_int8"],
    ),
    ("staging", ["up", "--store", "no-such-store"], {}, ["no-such-store", "perfserve build"]),
    ("profile", [], {}, ["--variant", "required"]),
    ("profile", ["--variant", "onnx_int8", "--repeats", "1"], {}, ["--repeats", "at least 2"]),
    ("profile", ["--compare", "nowhere", "elsewhere"], {}, ["--compare", "profile.json"]),
]
NEEDS_A_STORE = {"serve", "bench", "compare", "bench-generator", "robustness", "sweep"}


def _argv(command: str, args: list[str], store: Path) -> list[str]:
    given = [command, *(str(store) if arg == STORE else arg for arg in args)]
    if command in NEEDS_A_STORE and "--store" not in args and args != ["--bogus"]:
        given += ["--store", str(store)]
    return given


def test_the_table_covers_every_subcommand() -> None:
    assert {command for command, *_ in BAD_INVOCATIONS} == set(COMMANDS)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("command", "args", "env", "words"),
    BAD_INVOCATIONS,
    ids=[" ".join([c, *a, *(f"{k}={v}" for k, v in e.items())]) for c, a, e, _ in BAD_INVOCATIONS],
)
def test_a_bad_invocation_is_one_line_and_exit_2(
    command: str,
    args: list[str],
    env: dict[str, str],
    words: list[str],
    store: Path,
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "perfserve", *_argv(command, args, store)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # nothing of a developer's reports/ or model_store/ is found
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("perfserve"), lines[0]
    for word in words:
        assert word in lines[0]
    assert "errors.pydantic.dev" not in lines[0]


@pytest.mark.integration
def test_a_port_in_use_is_one_line_and_exit_2(store: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = run_perfserve("serve", "--store", str(store), "--port", port)
    assert result.returncode == 2
    assert result.stderr == (
        f"perfserve serve: error: --host 127.0.0.1 --port {port}: cannot listen there "
        "(Address already in use); choose another port, or an interface of this machine\n"
    )
    assert "ready" not in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PERFSERVE_SHAPE": "stairs"}, ["PERFSERVE_SHAPE", "'stairs'", "steps, ramp, spike"]),
        (
            {"PERFSERVE_SHAPE": "steps", "PERFSERVE_SHAPE_STEPS": "many"},
            ["PERFSERVE_SHAPE_STEPS", "'many'", "integer"],
        ),
    ],
)
def test_a_bad_load_shape_is_one_line_and_exit_2(env: dict[str, str], words: list[str]) -> None:
    locustfile = Path(__file__).parents[2] / "loadtests" / "locustfile.py"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-t", "1s"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    for word in words:
        assert word in line


@pytest.mark.integration
def test_no_arguments_print_help_and_version_is_there() -> None:
    bare = run_perfserve()
    assert bare.returncode == 0
    assert bare.stdout.startswith("usage: perfserve")
    for command in COMMANDS:
        assert command in bare.stdout
    version = run_perfserve("--version")
    assert version.returncode == 0 and version.stdout.startswith("perfserve ")


@pytest.mark.integration
def test_help_gives_sentences_with_defaults() -> None:
    sweep = run_perfserve("sweep", "--help").stdout
    assert "(default: 20.0; env PERFSERVE_STEP_SECONDS)" in " ".join(sweep.split())
    history = run_perfserve("history", "--help").stdout
    assert "The record id to accept" in history
    demo = run_perfserve("demo", "--help").stdout
    assert "Build the model store if it is missing" in " ".join(demo.split())

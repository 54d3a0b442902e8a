"""`perfserve profile` for real: servers on CPU 0, the native engine on CPU 1, py-spy.

Three profiles of onnx_int8 at 300/s, ten profiled steps of 2 s each and as many
without the profiler: on a busy core the sampler's readings come in clumps (a stall
lands many samples on one frame), and the noise bound needs that many repeats. Every
server runs with batching off: py-spy pauses the server for each sample, requests pile
up behind the pauses, and the batches they form vary from 2 to 18 rows between steps;
a model call's fixed cost shared by that many more or fewer requests moves the model's
µs per request by half, which is the load moving, not the code. One profile is of a
server the command starts itself, one attached by URL to a server of the same build,
one attached by PID to a test build whose answer encoder does 100 µs more work per
request (tests/benchmarks/profile/profile_hook). Against the second, the third must show
the encoder's stage moved. Bounded: about 60 s each.

That two profiles of one build show no stage moved is not asserted here: on a shared
2-core VM, three of four such pairs taken minutes apart had stages moved, `http_parse` by
up to 2x (docs/PROFILING.md). It is a figure of the machine, not a behaviour of the code.

Why 300/s with py-spy at 500 samples/s: py-spy stops every thread of the server for each
sample. On a slow shared host, a server profiled at 1,000 samples/s held only 530 of
1,000 req/s (p50 1.2 s): saturated, its stages moved with its backlog, not its code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfserve_common.processes import running_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HOOK = Path(__file__).resolve().parent / "profile_hook"
RATE = 300
LOAD = ["--variant", "onnx_int8", "--rate", str(RATE), "--seconds", "20", "--repeats", "10"]
LOAD += ["--sample-rate", "500", "--server-cpus", "0", "--generator-cpus", "1"]
TIMEOUT_S = 240
UNBATCHED = {"PERFSERVE_MAX_BATCH_SIZE": "1"}


def perfserve_profile(*args: str) -> subprocess.CompletedProcess[str]:
    """The command, with batching off in any server it starts (see the module's text)."""
    command = [sys.executable, "-m", "perfserve", "profile", *args]
    env = {**os.environ, **UNBATCHED}
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT,
                          env=env)  # fmt: skip


@pytest.fixture(scope="module")
def profiles(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = tmp_path_factory.mktemp("profiles")
    folders = {name: out / name for name in ("started", "attached", "slow_encoder")}
    done = perfserve_profile(*LOAD, "--store", str(store), "--out", str(folders["started"]))
    assert done.returncode == 0, done.stderr
    with running_server(store, cpus="0", env=UNBATCHED) as server:
        done = perfserve_profile(*LOAD, "--store", str(store), "--url", server.url,
                                 "--out", str(folders["attached"]))  # fmt: skip
        assert done.returncode == 0, done.stderr
    slow = {"PYTHONPATH": os.pathsep.join([str(HOOK), str(ROOT)]), **UNBATCHED}
    with running_server(store, cpus="0", env=slow) as server:
        done = perfserve_profile(*LOAD, "--store", str(store), "--pid", str(server.process.pid),
                                 "--out", str(folders["slow_encoder"]))  # fmt: skip
        assert done.returncode == 0, done.stderr
    yield folders


def compare(a: Path, b: Path, out: Path) -> dict[str, object]:
    done = perfserve_profile("--compare", str(a), str(b), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Moved beyond run-to-run noise" in done.stdout
    result: dict[str, object] = json.loads((out / "compare.json").read_text())
    return result


def test_a_profile_writes_its_outputs_and_its_table_adds_up(profiles: dict[str, Path]) -> None:
    for folder in profiles.values():
        for name in ("flamegraph.svg", "profile.speedscope.json", "profile.md", "stacks.txt"):
            assert (folder / name).stat().st_size > 0, name
        data = json.loads((folder / "profile.json").read_text())
        table = data["table"]
        assert table["adds_up"], table
        assert abs(sum(table["us_per_request"].values()) / table["measured_us"] - 1) <= 0.10
        assert table["us_per_request"]["model"] > 0 and table["us_per_request"]["decode"] > 0
        load = data["load"]["median_of_repeats"]
        assert load["achieved_qps"] > 0.8 * RATE and load["batch_size"] == pytest.approx(1)
        assert set(data["overhead"]["figures"]) == {
            "achieved_qps", "p50_ms", "p99_ms", "cpu_us_per_request",
        }  # fmt: skip
        assert "method" in data["noise"] and len(data["repeats"]) == 10


def test_a_slower_encoder_shows_in_the_encode_stage(
    profiles: dict[str, Path], tmp_path: Path
) -> None:
    result = compare(profiles["attached"], profiles["slow_encoder"], tmp_path)
    assert "encode" in result["moved"], result["stages"]  # type: ignore[operator]
    assert (tmp_path / "diff-flamegraph.svg").stat().st_size > 0


def test_a_pid_that_is_not_a_perfserve_server_is_one_line_exit_4(store: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        done = perfserve_profile("--variant", "onnx_int8", "--store", str(store),
                                 "--pid", str(sleeper.pid))  # fmt: skip
    finally:
        sleeper.kill()
        sleeper.wait()
    assert done.returncode == 4
    assert "is not a perfserve server" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_url_nothing_listens_on_is_one_line_exit_4(store: Path) -> None:
    from perfserve_common.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = perfserve_profile("--variant", "onnx_int8", "--store", str(store), "--url", url)
    assert done.returncode == 4
    assert "no process on this machine listens" in done.stderr
    assert done.stderr.count("\n") == 1

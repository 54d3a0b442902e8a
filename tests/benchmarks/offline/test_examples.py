"""The offline benchmark guide's decide and compare commands run as written, on the example
files it names."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from perfserve.cli import main

ROOT = Path(__file__).parents[3]


GUIDE = ROOT / "docs" / "benchmark.md"


def guide_command(name: str) -> list[str]:
    """The guide's `perfserve NAME ...` command line, without the `perfserve`."""
    for line in GUIDE.read_text().splitlines():
        if line.strip().startswith(f"perfserve {name} "):
            return shlex.split(line, comments=True)[1:]
    raise AssertionError(f"{GUIDE.name} has no `perfserve {name}` command")


def test_the_guide_decides_with_the_example_requirements(
    bench_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    command = guide_command("decide")
    assert command[command.index("--requirements") + 1] == "examples/requirements.yaml"
    monkeypatch.chdir(ROOT)
    code = main([*command, "--bench", str(bench_dir)])
    out = capsys.readouterr().out
    assert code in (0, 1)  # 1: no variant met every limit on this machine, and it says why
    assert "ranked by latency (ms mean per call)" in out
    assert ("choose: " in out) == (code == 0)


@pytest.mark.integration
def test_the_guide_compares_with_the_example_rules(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    command = guide_command("compare")
    assert command[command.index("--rules") + 1] == "examples/rules.yaml"
    monkeypatch.chdir(ROOT)
    # The guide's command on the test's store, with fewer runs and outputs kept aside.
    small = ["--store", str(store), "--runs", "4", "--min-block-ms", "2"]
    code = main([*command, *small, "--out", str(tmp_path / "out"), "--history", str(tmp_path)])
    out = capsys.readouterr().out
    assert code in (0, 1)  # promote or reject, never a usage error
    assert "sklearn_fp32" in out and "onnx_int8" in out
    assert (tmp_path / "out" / "compare.json").is_file()

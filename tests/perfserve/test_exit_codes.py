"""Exit statuses mean the same for every subcommand, as docs/ARCHITECTURE.md's table says,
and an option's old spelling still works for one release, with a warning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from perfserve.cli import build_parser, main
from perfserve.cli.exit_codes import ExitCode
from tests.utils.stack import ROOT


def documented_codes() -> dict[int, str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code): name for code, name in re.findall(r"^\| (\d) \| `(\w+)` \|", section, re.M)}


def test_the_documented_table_is_the_code() -> None:
    assert documented_codes() == {code.value: code.name for code in ExitCode}


def test_a_usage_mistake_is_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:  # argparse's own mistakes end here
        main(["sweep", "--url", "http://127.0.0.1:9", "--rates", "abc"])
    assert stopped.value.code == ExitCode.USAGE
    assert "--rates" in capsys.readouterr().err


def test_a_missing_tool_is_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk on it
    assert main(["bench-http", "--store", str(tmp_path / "store")]) == ExitCode.ENVIRONMENT
    assert "apt-get install wrk" in capsys.readouterr().err


@pytest.mark.integration
def test_a_missing_extra_is_4(tmp_path: Path) -> None:
    # As in an install without the 'build' extra: skl2onnx cannot be imported.
    program = "import sys; sys.modules['skl2onnx'] = None; from perfserve.cli import main; "
    program += "sys.exit(main(['build', '--store', 'unused']))"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == ExitCode.ENVIRONMENT, done.stderr
    assert done.stderr.strip().endswith("pip install 'perfserve[build]'")


def test_an_old_option_spelling_still_works_and_says_the_new_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser("bench-generator")
    args = parser.parse_args(["bench-generator", "--server-cpu", "3", "--generator-cpus", "1"])
    assert (args.server_cpus, args.generator_cpus) == ("3", "1")
    assert "--server-cpu is now --server-cpus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench-generator", "--help"])
    help_text = capsys.readouterr().out
    assert "--server-cpus" in help_text
    assert "--server-cpu " not in help_text

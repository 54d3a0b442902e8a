"""What identifies the code and the machine a measurement ran on: the git revision and
the CPU model. The bench keys its history by them and the sweep's report states them, so
a figure is only compared with one measured alike.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path


def package_version() -> str | None:
    """The installed perfserve's version, or None when it is not installed (run from a
    checkout on PYTHONPATH)."""
    try:
        return metadata.version("perfserve")
    except metadata.PackageNotFoundError:
        return None


def code_revision(where: Path | None = None) -> str:
    """The git commit of the code being measured (with "+dirty" for local edits), or the
    installed package version when this is not a git checkout."""
    folder = where or Path(__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return f"perfserve-{package_version()}"
    return commit + ("+dirty" if dirty else "")


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (or what the platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

"""Read-only folders that are really read-only, and ConfigMap volumes laid out as the kubelet
lays them out, for tests of a split file mounted from a ConfigMap.

Root ignores permission bits, so `chmod 555` proves nothing when tests run as root: a bind
mount remounted read-only refuses every write with EROFS, root's included, as a
`readOnly: true` volume does. Where mounting is not allowed the tests that need it skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest


def can_mount() -> bool:
    """Whether this process may bind-mount (root with CAP_SYS_ADMIN, `mount` installed)."""
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def read_only(source: Path) -> Iterator[Path]:
    """`source` bind-mounted read-only at a new folder beside it, while the block runs:
    writes through that folder fail with EROFS (root's too), writes to `source` show
    through, as a ConfigMap's updates do."""
    if not can_mount():
        pytest.skip("needs root and mount(8) for a read-only bind mount")
    target = source.with_name(source.name + ".mounted")
    target.mkdir()
    bound = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"bind mounts are not allowed here: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True
        )
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


def config_map_volume(folder: Path, files: Mapping[str, str]) -> None:
    """Write `files` as the kubelet writes a ConfigMap volume: each name a symlink into
    `..data`, itself a symlink to a timestamped folder; an update is a new folder and an
    atomic rename of `..data`, so a reader sees the old file or the new one, whole."""
    folder.mkdir(parents=True, exist_ok=True)
    version = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
        (version / name).chmod(0o644)
    version.chmod(0o755)
    staged = folder / "..data_tmp"
    staged.symlink_to(version.name)
    old = (folder / "..data").resolve() if (folder / "..data").exists() else None
    staged.replace(folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(old)

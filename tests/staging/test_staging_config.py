"""What `perfserve staging up` decides before it starts anything: a bad state folder and a
port in use as one-line usage errors (Grafana's settings: test_grafana.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from perfserve.staging.stack import STATE_FILE, TOOLS, Options, read_state, up
from perfserve_common.usage import UsageError
from tests.utils import require_tool


def test_a_state_file_that_is_not_a_stacks_is_a_usage_error(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"parts": [{"pid": 1}]}')
    with pytest.raises(UsageError, match=r"--state-dir .* is not a stack's state"):
        read_state(tmp_path)


def test_a_port_in_use_names_its_option_before_anything_starts(store: Path, tmp_path: Path) -> None:
    for tool in TOOLS:
        require_tool(tool)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        options = Options(replicas=1, store=store, state_dir=tmp_path, prometheus_port=port)
        with pytest.raises(UsageError, match=f"--prometheus-port {port}: cannot listen"):
            up(options)
    assert list(tmp_path.iterdir()) == []

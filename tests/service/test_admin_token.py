"""The admin token's rules as documented: every request under /rollout (GET included) and
every request that is not a GET, HEAD or OPTIONS needs it, checked on the headers before
any body is read; a token file that other users can read is warned about at start-up."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from perfserve_common.processes import running_server
from tests.utils import ADMIN, ADMIN_TOKEN
from tests.utils.inprocess import serving


async def test_rollout_status_needs_the_token_and_is_refused_by_the_guard(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(store, admin_token=ADMIN_TOKEN) as app:
        with caplog.at_level(logging.WARNING, logger="perfserve"):
            anonymous = await app.client.get("/rollout/status")
        with_token = await app.client.get("/rollout/status", headers=ADMIN)
        traffic = await app.client.get("/traffic")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert "refused GET '/rollout/status'" in caplog.text  # by the guard, on the headers
    assert with_token.status_code == 404  # no rollout yet
    assert traffic.status_code == 200  # other GETs stay open


@pytest.mark.integration
def test_serve_warns_at_start_up_about_a_token_file_others_can_read(
    store: Path, tmp_path: Path
) -> None:
    path = tmp_path / "admin-token"
    path.write_text(ADMIN_TOKEN)
    os.chmod(path, 0o644)
    with running_server(store, options=["--admin-token-file", str(path)]) as server:
        assert httpx.get(f"{server.url}/rollout/status", headers=ADMIN).status_code == 404
        log = server.log()
    assert f"the admin token file {path} can be read by other users (mode 0644)" in log

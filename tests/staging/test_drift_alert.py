"""Input drift seen through live Prometheus: a real server scraped every second with the
project's rules (every alert's `for:` shortened to two seconds), sent hold-out rows by
the Locust scenarios, then the same rows with one feature in another unit
(`--shift "worst area=3"`). Quiet before; after, `PerfserveInputDrift` fires for that
feature, and every query of the dashboard's Drift row returns it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from perfserve.staging.prometheus import running_prometheus
from perfserve_common.processes import running_server
from tests.utils import eventually, require_tool
from tests.utils.stack import (
    ROOT,
    as_promql,
    firing_alerts,
    load_dashboard,
    query_range,
    row_panels,
    rules_rendered,
    with_data,
)

pytestmark = pytest.mark.slow

SHIFTED = "worst area"
VARIANT = "sklearn_fp32"
# Windows of 1000 rows, exported once full, refreshed twice a second: about six seconds
# of the traffic below (fewer rows drawn from the 171 hold-out rows read higher by chance).
DRIFT_ENV = {
    "PERFSERVE_DRIFT_INTERVAL_S": "0.5",
    "PERFSERVE_DRIFT_WINDOW_ROWS": "1000",
    "PERFSERVE_DRIFT_MIN_ROWS": "1000",
}
RATE_INTERVAL = "5s"


@dataclass(frozen=True)
class Live:
    prometheus: str
    url: str
    store: Path


@pytest.fixture(scope="module")
def live(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_tool("prometheus")
    with running_server(store, env=DRIFT_ENV) as server:
        replica = server.url.removeprefix("http://")
        workdir = tmp_path_factory.mktemp("prometheus")
        rules = rules_rendered(workdir, alert_for="2s")
        with running_prometheus({"perfserve": [replica]}, workdir, source=rules) as prometheus:
            yield Live(prometheus, server.url, store)


def locust(live: Live, seconds: int, *extra: str) -> subprocess.Popen[bytes]:
    """The project's SingleRowUser scenario against the server: 4 users at 40 requests/s."""
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
        "--host", live.url, "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s",
        "--user-rps", "40", "--bad-share", "0", "--metrics-port", "0",
        "--store", str(live.store), "--only-summary", *extra, "SingleRowUser",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )


def highest_psi(live: Live) -> float:
    """The highest per-feature PSI of the variant in the last seconds (0 when none yet)."""
    now = time.time()
    expr = f'max(perfserve_input_psi{{variant="{VARIANT}", feature!="all"}})'
    series = with_data(query_range(live.prometheus, expr, now - 2, now))
    return max((float(v) for s in series for _, v in s["values"]), default=0.0)


def test_hold_out_traffic_is_quiet_and_shifted_traffic_fires_the_alert(live: Live) -> None:
    calm = locust(live, 15)
    try:
        eventually(lambda: highest_psi(live) > 0, timeout_s=60, every_s=0.5)
        assert highest_psi(live) < 0.2
        assert not firing_alerts(live.prometheus, "PerfserveInputDrift")
    finally:
        calm.wait(timeout=60)

    start = time.time()
    shifted = locust(live, 60, "--shift", f"{SHIFTED}=3")
    try:
        eventually(
            lambda: any(
                alert["labels"]["feature"] == SHIFTED
                for alert in firing_alerts(live.prometheus, "PerfserveInputDrift")
            ),
            timeout_s=60,
            every_s=0.5,
        )
    finally:
        shifted.terminate()
        shifted.wait(timeout=30)
    (alert,) = firing_alerts(live.prometheus, "PerfserveInputDrift")
    assert alert["labels"]["variant"] == VARIANT
    assert (
        f"{VARIANT} is sent {SHIFTED} unlike its training data" in alert["annotations"]["summary"]
    )

    queries = [
        target["expr"]
        for panel in row_panels(load_dashboard(), "Drift")
        for target in panel["targets"]
    ]
    assert len(queries) == 3
    for expr in queries:
        series = with_data(
            query_range(live.prometheus, as_promql(expr, RATE_INTERVAL), start, time.time())
        )
        assert series, f"no data: {expr}"
        features = {s["metric"].get("feature") for s in series}
        assert features == {None} or SHIFTED in features, (expr, features)

"""`perfserve bench-generator`: its table from recorded rounds, and its usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.generator.generator_bench import render
from tests.utils import run_perfserve


def test_the_table_shows_medians_over_rounds_and_dashes_for_what_was_not_measured() -> None:
    rounds = {
        "native": [
            {"ceiling_qps": 15_000.0, "p50_ms": 0.3, "late_share": 0.0},
            {"ceiling_qps": 17_000.0, "p50_ms": 0.5, "late_share": 0.002},
            {"ceiling_qps": 16_000.0, "p50_ms": 0.4, "late_share": 0.001},
        ],
        "k6": [{"p50_ms": 0.9}],
    }
    table = render(rounds, 1000.0).splitlines()
    native = table[2].split()
    assert native[:2] == ["native", "16,000"]
    assert "0.400" in native and "0.10%" in native
    assert table[3].split()[1] == "-"


@pytest.mark.integration
def test_a_variant_the_store_lacks_is_a_usage_error(store: Path) -> None:
    done = run_perfserve("bench-generator", "--store", str(store), "--variant", "nope")
    assert done.returncode == 2
    assert "--variant 'nope': not in the store" in done.stderr
    done = run_perfserve("bench-generator", "--store", str(store), "--knee-slo-ms", "25")
    assert done.returncode == 2
    assert "--knee-slo-ms needs --k6" in done.stderr
    done = run_perfserve("bench-generator", "--store", str(store), "--knee-rounds", "0")
    assert done.returncode == 2
    assert "--knee-rounds must be >= 1" in done.stderr
    done = run_perfserve("bench-generator", "--store", str(store), "--same-rates", "1000")
    assert done.returncode == 2
    assert "--same-rates needs --openloop" in done.stderr

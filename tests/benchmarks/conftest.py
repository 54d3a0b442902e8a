"""One small real bench per session, shared by the tests that read its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.gate.score import DEFAULT_WEIGHTS
from perfserve.benchmarks.offline.bench import BenchPlan, BenchResult, default_specs, run_bench
from perfserve.benchmarks.offline.report import write_outputs
from perfserve.benchmarks.offline.summary import summarize
from perfserve.benchmarks.offline.summary_types import BenchSummary
from service.store import Manifest


@pytest.fixture(scope="session")
def bench_result(store: Path, manifest: Manifest) -> BenchResult:
    plan = BenchPlan(
        store,
        default_specs(store, manifest),
        batch_sizes=[1, 8],
        runs=4,
        calls_per_run=None,  # blocks of >= 5 ms: one preemption cannot swamp a run
        min_block_seconds=0.005,
        warmup_calls=3,
        profile_calls=3,
    )
    return run_bench(plan, manifest, say=lambda text: None)


@pytest.fixture(scope="session")
def bench_summary(bench_result: BenchResult) -> BenchSummary:
    return summarize(bench_result, dict(DEFAULT_WEIGHTS))


@pytest.fixture(scope="session")
def bench_dir(bench_summary: BenchSummary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    write_outputs(bench_summary, out)
    return out

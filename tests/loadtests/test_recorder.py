"""HdrHistogram percentiles are exact to the histogram's precision, and survive the wire."""

from __future__ import annotations

import numpy as np

from loadtests.loadgen_metrics import LATENCY_BUCKETS
from loadtests.recorder import (
    Recorder,
    bucket_counts,
    count_above_ms,
    new_histogram,
    percentile_ms,
    record_bulk,
    windows_from_wire,
    windows_to_wire,
)

PRECISION = 1e-3  # three significant digits


def recorded(latencies_s: np.ndarray) -> Recorder:
    recorder = Recorder()
    for latency in latencies_s:
        recorder.answer((1, 0), "onnx_int8", "ok", "200", latency, latency / 2)
    return recorder


def test_p99_matches_the_exact_percentile_of_the_samples() -> None:
    rng = np.random.default_rng(3)
    # A long-tailed mix, like a server that sometimes queues: 1-3 ms, some 20-80 ms.
    latencies = np.concatenate([rng.uniform(0.001, 0.003, 5000), rng.uniform(0.02, 0.08, 80)])
    histogram = recorded(latencies).windows[(1, 0)].tally("onnx_int8").scheduled
    micros = np.round(latencies * 1e6)
    for percentile in (50.0, 90.0, 99.0, 99.9):
        exact_ms = float(np.percentile(micros, percentile, method="inverted_cdf")) / 1000
        assert abs(percentile_ms(histogram, percentile) - exact_ms) <= exact_ms * PRECISION
    assert histogram.get_max_value() / 1000 >= micros.max() / 1000 * (1 - PRECISION)


def test_counts_above_a_threshold_and_prometheus_buckets() -> None:
    latencies = np.array([0.0004, 0.002, 0.004, 0.030, 0.120])
    histogram = recorded(latencies).windows[(1, 0)].tally("onnx_int8").scheduled
    assert count_above_ms(histogram, 25.0) == 2
    buckets = dict(zip(LATENCY_BUCKETS, bucket_counts(histogram, LATENCY_BUCKETS), strict=True))
    assert buckets[0.0005] == 1
    assert buckets[0.005] == 3
    assert buckets[0.05] == 4
    assert buckets[10.0] == 5


def test_windows_merge_across_the_wire_as_if_recorded_in_one_place() -> None:
    worker_a, worker_b = recorded(np.full(10, 0.002)), recorded(np.full(30, 0.010))
    worker_a.window((1, 0)).late += 2
    worker_b.window((1, 3)).dropped += 1
    master = Recorder()
    for worker in (worker_a, worker_b):
        master.merge(windows_from_wire(windows_to_wire(worker.take())))
    tally = master.window((1, 0)).tally("onnx_int8")
    assert tally.scheduled.get_total_count() == 40
    assert tally.outcomes["ok"] == 40
    assert abs(percentile_ms(tally.scheduled, 50) - 10.0) <= 10.0 * PRECISION
    assert master.window((1, 0)).late == 2
    assert master.window((1, 3)).dropped == 1
    assert worker_a.take() == {}


def test_a_tally_read_once_and_recorded_into_again_crosses_the_wire_whole() -> None:
    """What a histogram already holds travels encoded, what came after as values."""
    worker = recorded(np.full(10, 0.002))
    assert worker.window((1, 0)).tally("onnx_int8").scheduled.get_total_count() == 10
    worker.answer((1, 0), "onnx_int8", "ok", "200", 0.010, 0.005)
    master = Recorder()
    master.merge(windows_from_wire(windows_to_wire(worker.take())))
    tally = master.window((1, 0)).tally("onnx_int8")
    assert tally.scheduled.get_total_count() == tally.sent.get_total_count() == 11
    assert abs(percentile_ms(tally.scheduled, 100) - 10.0) <= 10.0 * PRECISION


def test_failures_are_counted_but_not_timed() -> None:
    recorder = Recorder()
    recorder.answer((1, 0), "onnx_fp32", "shed", "503", 0.0002, 0.0001)
    tally = recorder.window((1, 0)).tally("onnx_fp32")
    assert tally.outcomes["shed"] == 1
    assert tally.statuses["503"] == 1
    assert tally.scheduled.get_total_count() == 0


def test_a_discarded_step_ignores_late_answers() -> None:
    recorder = recorded(np.full(5, 0.001))
    recorder.discard(1)
    recorder.merge(recorded(np.full(5, 0.001)).take())
    assert recorder.windows == {}


def test_bulk_recording_fills_the_same_counters_as_one_value_at_a_time() -> None:
    rng = np.random.default_rng(5)
    values = [*rng.integers(1, 5000, 3000).tolist(), *rng.integers(5000, 60_000_000, 300)]
    values += [1, 2047, 2048, 4095, 4096, 60_000_000]
    one_by_one, bulk = new_histogram(), new_histogram()
    for value in values:
        one_by_one.record_value(int(value))
    record_bulk(bulk, [int(v) for v in values])
    assert bulk.encode() == one_by_one.encode()
    assert bulk.get_total_count() == len(values)
    assert (bulk.get_min_value(), bulk.get_max_value()) == (
        one_by_one.get_min_value(),
        one_by_one.get_max_value(),
    )

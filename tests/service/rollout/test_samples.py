"""Each worker's evidence and how the controller merges every replica's files."""

from __future__ import annotations

import time
from pathlib import Path

from service.rollout.samples import SampleRecorder, publish, read_evidence


def test_records_from_every_replica_merge_into_one_window_per_variant(tmp_path: Path) -> None:
    first, second = SampleRecorder(100), SampleRecorder(100)
    for recorder in (first, second):
        recorder.follow("base", "cand", since=0.0)
    first.record("base", 0.001, 200)
    first.record("cand", 0.002, 500)
    first.record("other", 0.003, 200)  # neither variant of the rollout
    second.record("cand", 0.004, 200)
    second.record("cand", 0.005, 503)
    second.record("cand", 0.006, 504)
    second.compare([True, False], [0.9, 0.8], [0.1, 0.8])
    publish(tmp_path, first.snapshot("host-1", 3))
    publish(tmp_path, second.snapshot("host-2", 2))

    evidence = read_evidence(tmp_path, "base", "cand", since=0.0)

    assert (evidence.baseline.requests, list(evidence.baseline.latencies_s)) == (1, [0.001])
    candidate = evidence.candidate
    assert list(candidate.latencies_s) == [0.004]
    assert (candidate.requests, candidate.errors, candidate.shed) == (4, 2, 1)
    assert (evidence.shadow.compared, evidence.shadow.disagreed) == (2, 1)
    assert list(evidence.shadow.candidate_scores) == [0.1, 0.8]
    assert {(r.replica, r.split_version) for r in evidence.live_replicas()} == {
        ("host-1", 3),
        ("host-2", 2),
    }


def test_a_new_window_drops_older_records_and_nothing_is_kept_between_rollouts(
    tmp_path: Path,
) -> None:
    recorder = SampleRecorder(100)
    recorder.follow("base", "cand", since=0.0)
    recorder.record("base", 0.001, 200)
    opened = time.time()
    recorder.follow("base", "cand", since=opened)
    recorder.record("base", 0.002, 200)
    publish(tmp_path, recorder.snapshot("host-1", 1))
    assert list(read_evidence(tmp_path, "base", "cand", opened).baseline.latencies_s) == [0.002]
    recorder.stop()
    assert not recorder.active and not recorder.requests


def test_the_ring_buffer_is_bounded() -> None:
    recorder = SampleRecorder(100)
    recorder.follow("base", "cand", since=0.0)
    for _ in range(1000):
        recorder.record("base", 0.001, 200)
    assert len(recorder.requests) == 100

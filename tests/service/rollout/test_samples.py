"""Each worker's evidence, its journal, and how the controller merges every journal."""

from __future__ import annotations

import time
from pathlib import Path

from service.rollout.journal import EvidenceReader, Journal
from service.rollout.samples import SampleRecorder


def publish(folder: Path, replica: str, recorder: SampleRecorder, version: int) -> Journal:
    journal = Journal(folder, replica, segment_records=1000)
    journal.publish(version, *recorder.take())
    return journal


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
    publish(tmp_path, "host-1", first, 3)
    publish(tmp_path, "host-2", second, 2)

    evidence = EvidenceReader(tmp_path, "base", "cand").read(since=0.0)

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


def test_each_read_takes_only_what_was_appended_and_a_new_window_refilters(
    tmp_path: Path,
) -> None:
    recorder, reader = SampleRecorder(100), EvidenceReader(tmp_path, "base", "cand")
    journal = Journal(tmp_path, "host-1", segment_records=3)  # rotates every 3 records
    recorder.follow("base", "cand", since=0.0)
    latencies = []
    for tick in range(7):
        recorder.record("base", tick / 1000, 200)
        recorder.record("cand", tick / 1000, 200)
        journal.publish(1, *recorder.take())
        latencies.append(tick / 1000)
        evidence = reader.read(since=0.0)
        assert list(evidence.baseline.latencies_s) == latencies  # none twice, none lost
    assert len(list(tmp_path.glob("host-1.*.jsonl"))) <= 2  # old segments are deleted
    opened = time.time()
    recorder.record("base", 0.5, 200)
    journal.publish(1, *recorder.take())
    assert list(reader.read(since=opened).baseline.latencies_s) == [0.5]


def test_a_new_window_drops_older_records_and_nothing_is_kept_between_rollouts(
    tmp_path: Path,
) -> None:
    recorder = SampleRecorder(100)
    recorder.follow("base", "cand", since=0.0)
    recorder.record("base", 0.001, 200)
    opened = time.time()
    recorder.follow("base", "cand", since=opened)
    recorder.record("base", 0.002, 200)
    journal = publish(tmp_path, "host-1", recorder, 1)
    evidence = EvidenceReader(tmp_path, "base", "cand").read(opened)
    assert list(evidence.baseline.latencies_s) == [0.002]
    recorder.stop()
    journal.clear()
    assert not recorder.active and not recorder.requests and not list(tmp_path.iterdir())


def test_the_buffers_are_bounded() -> None:
    recorder = SampleRecorder(100)
    recorder.follow("base", "cand", since=0.0)
    for _ in range(1000):
        recorder.record("base", 0.001, 200)
    assert len(recorder.requests) == 100

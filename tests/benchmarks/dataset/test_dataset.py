"""`perfserve bench --dataset FILE`: a generated file scored in chunks with the quality of
the hold-out, and every way a file or a scheduler can be wrong answered in one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from perfserve.benchmarks.dataset.generate import generate
from perfserve.benchmarks.dataset.reading import chunks, layout, part_chunks, parts
from perfserve.benchmarks.dataset.run import Where, score_dataset
from perfserve.cli import main
from service.store import Manifest

ROWS = 200_000


@pytest.fixture(scope="module")
def parquet(store: Path, manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataset") / "rows.parquet"
    generate(store, manifest, ROWS, path)
    return path


@pytest.fixture(scope="module")
def small_csv(store: Path, manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataset") / "rows.csv"
    generate(store, manifest, 5_000, path)
    return path


def test_every_variant_scores_every_row_with_the_holdout_quality(
    store: Path, manifest: Manifest, parquet: Path
) -> None:
    source = layout(parquet, manifest)
    result = score_dataset(store, manifest, source, list(manifest.variants), Where(), 50_000)
    assert [p.variant for p in result.passes] == list(manifest.variants)
    for p in result.passes:
        assert p.rows == ROWS
        assert p.rows_per_second == pytest.approx(ROWS / p.total_seconds)
        clean = manifest.variants[p.variant].metrics["accuracy"]
        assert abs(p.quality["accuracy"] - clean) < 0.03  # rows drawn from the hold-out
    assert result.peak_rss_bytes > 50 << 20


def test_chunks_never_exceed_the_chunk_size(manifest: Manifest, parquet: Path) -> None:
    source = layout(parquet, manifest)
    sizes = [len(chunk.features) for chunk in chunks(source, 30_000)]
    assert sum(sizes) == ROWS and max(sizes) <= 30_000
    firsts = [chunk.first_row for chunk in chunks(source, 30_000)]
    assert firsts[:2] == [1, 30_001]


def test_csv_parts_cover_every_row_once(manifest: Manifest, small_csv: Path) -> None:
    source = layout(small_csv, manifest)
    cut = parts(source, 64 << 10)
    assert len(cut) > 3
    rows = [chunk.first_row for part in cut for chunk in part_chunks(source, part, 100_000)]
    counts = [len(chunk.features) for part in cut for chunk in part_chunks(source, part, 10**6)]
    assert sum(counts) == 5_000
    assert rows == [part.first_row for part in cut]
    assert rows[1] == 1 + counts[0]


def _rewrite(small_csv: Path, tmp_path: Path, edit: str) -> Path:
    lines = small_csv.read_text().splitlines()
    header = lines[0].split(",")
    if edit == "missing column":
        lines = [",".join(line.split(",")[1:]) for line in lines]
    elif edit == "extra column":
        lines = [lines[0] + ',"note"'] + [line + ",1" for line in lines[1:]]
    elif edit == "text cell":
        cells = lines[4000].split(",")
        cells[2] = "abc"
        lines[4000] = ",".join(cells)
    elif edit == "empty cell":
        cells = lines[7].split(",")
        cells[len(header) - 2] = ""
        lines[7] = ",".join(cells)
    elif edit == "header only":
        lines = lines[:1]
    elif edit == "empty file":
        lines = []
    path = tmp_path / "edited.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("missing column", ["column", "is missing"]),
        ("extra column", ["column 'note'", "not a feature"]),
        ("text cell", ["row 4000 (line 4001)", "'abc' is not a number"]),
        ("empty cell", ["row 7 (line 8)", "the cell is empty"]),
        ("header only", ["has a header but no rows"]),
        ("empty file", ["is empty"]),
    ],
)
def test_a_bad_file_is_one_line_exit_2(
    edit: str,
    words: list[str],
    store: Path,
    manifest: Manifest,
    small_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _rewrite(small_csv, tmp_path, edit)
    code = main(["bench", "--store", str(store), "--dataset", str(path), "--out", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"perfserve bench: error: {path}")
    for word in words:
        assert word in lines[0]
    if edit == "missing column":
        assert repr(manifest.feature_names[0]) in lines[0]
    if edit == "text cell":
        assert repr(manifest.feature_names[2]) in lines[0]


def test_an_unreachable_scheduler_is_one_line_exit_4_within_10_s(
    store: Path, small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    dataset = ["--dataset", str(small_csv), "--out", str(tmp_path)]
    code = main(["bench", "--store", str(store), *dataset, "--dask-scheduler", "tcp://127.0.0.1:9"])
    assert time.monotonic() - started < 10
    assert code == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        "perfserve bench: error: no Dask scheduler answers at tcp://127.0.0.1:9 within 3 s "
        "(Connection refused)"
    ]


def test_a_scheduler_address_without_a_port_is_exit_2(
    store: Path, small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = ["--dataset", str(small_csv), "--out", str(tmp_path)]
    code = main(["bench", "--store", str(store), *dataset, "--dask-scheduler", "localhost"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "perfserve bench: error: --dask-scheduler 'localhost': expected tcp://HOST:PORT"
    ]


@pytest.mark.integration
def test_a_local_cluster_gives_the_same_answers(
    store: Path, manifest: Manifest, small_csv: Path
) -> None:
    source = layout(small_csv, manifest)
    alone = score_dataset(store, manifest, source, ["onnx_fp32"], Where())
    cluster = score_dataset(store, manifest, source, ["onnx_fp32"], Where(local_cluster=True))
    assert cluster.workers >= 1 and "LocalCluster" in cluster.mode
    assert cluster.passes[0].rows == alone.passes[0].rows == 5_000
    assert cluster.passes[0].quality == alone.passes[0].quality

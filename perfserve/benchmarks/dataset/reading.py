"""A dataset file (CSV or Parquet with the store's feature columns, the target optional)
read in chunks of rows, so memory stays flat whatever the file's size.

Every way the file can be unusable ends in one line that names the column or the row:
missing or extra columns, a cell that is not a number, an empty cell, an empty file.
Rows are numbered from 1 after the header, as a spreadsheet user counts them; a CSV's
line number is the row's plus one.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from perfserve_common.usage import UsageError
from service.store import Manifest

CSV_BLOCK_BYTES = 8 << 20
"""Bytes pyarrow parses per CSV block: a few hundred thousand rows of a 30-feature file."""
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")


class DatasetError(UsageError):
    """The dataset cannot be scored; the message names the file and the column or row.
    A plain exception of one argument, so it survives the trip back from a Dask worker."""


@dataclass(frozen=True)
class Chunk:
    features: np.ndarray
    """float32, (rows, n_features), in the store's feature order."""
    target: np.ndarray | None
    first_row: int
    """The chunk's first row number (1-based, after the header)."""


@dataclass(frozen=True)
class Layout:
    """What the header says: which columns to read, and whether the target is there."""

    path: Path
    kind: str
    """"csv" or "parquet"."""
    features: list[str]
    target: str | None


def layout(path: Path, manifest: Manifest) -> Layout:
    """Check the file's columns against the store's before any row is scored."""
    if not path.is_file():
        raise DatasetError(f"no such dataset file: {path}")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path} is empty")
    kind = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    columns = _parquet_columns(path) if kind == "parquet" else _csv_header(path)
    expected = manifest.feature_names
    missing = [name for name in expected if name not in columns]
    if missing:
        raise DatasetError(
            f"{path}: column {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; the store's model needs every feature column"
        )
    extra = [name for name in columns if name not in expected and name != manifest.target]
    if extra:
        raise DatasetError(
            f"{path}: column {extra[0]!r} is not a feature of the store's model (nor its target "
            f"{manifest.target!r}); remove it"
        )
    if len(set(columns)) != len(columns):
        twice = next(name for name in columns if columns.count(name) > 1)
        raise DatasetError(f"{path}: column {twice!r} appears twice")
    target = manifest.target if manifest.target in columns else None
    return Layout(path, kind, expected, target)


def chunks(source: Layout, rows: int) -> Iterator[Chunk]:
    """The whole file, `rows` at a time (a CSV: one parsed block at a time)."""
    batches = _parquet_batches(source, rows) if source.kind == "parquet" else _csv_parts(source)
    first = 1
    seen = False
    for batch in batches:
        if batch.num_rows == 0:
            continue
        seen = True
        for start in range(0, batch.num_rows, rows):
            part = batch.slice(start, rows)
            yield to_chunk(source, part, first)
            first += part.num_rows
    if not seen:
        raise DatasetError(f"{source.path} has a header but no rows")


def to_chunk(source: Layout, batch: pa.RecordBatch, first_row: int) -> Chunk:
    """Columns to a float32 matrix, refusing empty cells and values that are not finite."""
    columns = []
    for name in source.features:
        column = batch.column(batch.schema.get_field_index(name))
        if column.null_count:
            row = first_row + int(
                np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]
            )
            raise DatasetError(f"{_where(source, row)}, column {name!r}: the cell is empty")
        if not pa.types.is_floating(column.type) and not pa.types.is_integer(column.type):
            raise DatasetError(f"{source.path}: column {name!r} holds {column.type}, not numbers")
        columns.append(column.to_numpy(zero_copy_only=False))
    features = np.column_stack(columns).astype(np.float32, copy=False)
    finite = np.isfinite(features)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise DatasetError(
            f"{_where(source, first_row + row)}, column {source.features[col]!r}: "
            f"{features[row, col]} is not a finite float32 number"
        )
    target = None
    if source.target is not None:
        target = batch.column(batch.schema.get_field_index(source.target)).to_numpy(
            zero_copy_only=False
        )
    return Chunk(features, target, first_row)


def _where(source: Layout, row: int) -> str:
    line = f" (line {row + 1})" if source.kind == "csv" else ""
    return f"{source.path}: row {row}{line}"


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as file:
        header = next(csv.reader(file), None)
    if not header or header == [""]:
        raise DatasetError(f"{path} has no header line")
    return header


def _parquet_columns(path: Path) -> list[str]:
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowInvalid, OSError) as error:
        raise DatasetError(f"{path} is not a readable Parquet file: {error}") from None


def _parquet_batches(source: Layout, rows: int) -> Iterator[pa.RecordBatch]:
    wanted = source.features + ([source.target] if source.target else [])
    yield from _parquet(source.path).iter_batches(batch_size=rows, columns=wanted)


def _parquet(path: Path) -> pq.ParquetFile:
    """Without pre-buffering: with it, pyarrow keeps every row group it has read (the
    resident set grew to the size of a 5-million-row file); without, it stays flat."""
    return pq.ParquetFile(path, pre_buffer=False)


def _csv_batches(source: Layout, part: Part) -> Iterator[pa.RecordBatch]:
    """Blocks of one part's byte range, behind the header, the feature columns parsed as
    float64 (a float32 parse would turn 1e39 into inf silently; float64 keeps it for the
    finiteness check to name)."""
    types = {name: pa.float64() for name in source.features}
    options = pa_csv.ConvertOptions(column_types=types)
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    done = part.first_row - 1
    try:  # pyarrow parses the first block as it opens
        stream = pa.BufferReader(_part_bytes(source.path, part))
        reader = pa_csv.open_csv(stream, read_options=read, convert_options=options)
    except pa.ArrowInvalid as error:
        raise _csv_cell_error(source, error, done) from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as error:
            raise _csv_cell_error(source, error, done) from None
        done += batch.num_rows
        yield batch


def _csv_parts(source: Layout) -> Iterator[pa.RecordBatch]:
    """The CSV part by part: pyarrow's streaming reader, given the whole file, read all of
    it ahead at open (the resident set grew with the file); a part's bytes bound it."""
    for part in parts(source, CSV_BLOCK_BYTES * 2):
        yield from _csv_batches(source, part)


def _part_bytes(path: Path, part: Part) -> bytes:
    """The header line and the part's byte range, as one small CSV."""
    with path.open("rb") as file:
        header = file.readline()
        file.seek(part.start)
        return header + file.read(part.end - part.start)


@dataclass(frozen=True)
class Part:
    """A piece of the file one Dask task scores: a CSV byte range cut at line ends, or a
    Parquet file's row groups; with the number of its first row, for error messages."""

    first_row: int
    start: int = 0
    end: int = 0
    row_groups: tuple[int, ...] = ()


def parts(source: Layout, target_bytes: int) -> list[Part]:
    """Cut the file into parts of about `target_bytes`, in one streaming pass."""
    if source.kind == "parquet":
        return _parquet_parts(source, target_bytes)
    found: list[Part] = []
    with source.path.open("rb") as file:
        file.readline()
        start, row = file.tell(), 1
        while True:
            body = file.read(target_bytes)
            if not body:
                break
            body += file.readline()  # to the end of the line the cut fell in
            found.append(Part(row, start, start + len(body)))
            start += len(body)
            row += body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    return found


def _parquet_parts(source: Layout, target_bytes: int) -> list[Part]:
    metadata = pq.ParquetFile(source.path).metadata
    found, groups, size, first, row = [], [], 0, 1, 1
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        groups.append(index)
        size += group.total_byte_size
        row += group.num_rows
        if size >= target_bytes:
            found.append(Part(first, row_groups=tuple(groups)))
            groups, size, first = [], 0, row
    if groups:
        found.append(Part(first, row_groups=tuple(groups)))
    return found


def part_chunks(source: Layout, part: Part, rows: int) -> Iterator[Chunk]:
    """One part's rows, `rows` at a time."""
    if source.kind == "parquet":
        wanted = source.features + ([source.target] if source.target else [])
        batches: Iterator[pa.RecordBatch] = _parquet(source.path).iter_batches(
            batch_size=rows, row_groups=list(part.row_groups), columns=wanted
        )
    else:
        batches = _csv_batches(source, part)
    first = part.first_row
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            piece = batch.slice(start, rows)
            yield to_chunk(source, piece, first)
            first += piece.num_rows


def _csv_cell_error(source: Layout, error: pa.ArrowInvalid, rows_before: int) -> DatasetError:
    """pyarrow names the column of a bad cell, not its row: find the row by reading on
    from the block that failed with the plain csv module (only on this error path)."""
    found = _CSV_COLUMN.search(str(error))
    if found is None:
        return DatasetError(f"{source.path}: {error}")
    with source.path.open(newline="") as file:
        reader = csv.reader(file)
        header = next(reader)
        column = header[int(found.group(1))]
        index = header.index(column)
        for row, cells in enumerate(itertools.islice(reader, rows_before, None), rows_before + 1):
            if len(cells) != len(header):
                return DatasetError(
                    f"{_where(source, row)} has {len(cells)} fields, the header {len(header)}"
                )
            try:
                float(cells[index])
            except ValueError:
                shown = cells[index][:40]
                return DatasetError(
                    f"{_where(source, row)}, column {column!r}: {shown!r} is not a number"
                )
    return DatasetError(f"{source.path}, column {column!r}: {error}")

"""transform(): one raw object (or one line-aligned chunk of it) to partitioned tables and quarantine.

Pure: no AWS call, no clock, no randomness, so a retry produces the same tables and, through
`parquet.file_name`, the same keys. Row problems never raise; they are counted and quarantined,
and `rows_in == rows_good + rows_quarantined` holds for every result (checked before returning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN
from contracts.nogc import paused_gc
from services.transform import parse_csv
from services.transform.casts import arrow_type
from services.transform.chunks import ByteRange, can_split
from services.transform.decode import Source, open_text
from services.transform.errors import TransformError
from services.transform.lineage import line_column, with_lineage
from services.transform.parse import parse
from services.transform.partition import PartitionOutput, split_partitions
from services.transform.pieces import Pieces
from services.transform.quarantine import build_quarantine
from services.transform.rows import Parsed, Reread, Segment
from services.transform.validate import BadRows, check


@dataclass(frozen=True)
class TransformResult:
    """Per-partition tables (sorted, typed, with lineage), the quarantine table and row counts."""

    dataset: str
    object_id: str
    chunk_index: int
    partitions: list[PartitionOutput]
    quarantine: pa.Table
    rows_in: int
    rows_good: int
    rows_quarantined: int
    #: quarantined rows per reason code (value-free: safe for events and metrics)
    quarantine_reasons: Mapping[str, int] = field(default_factory=dict)


def _with_lines(goods: list[Segment], dataset: Dataset) -> pa.Table:
    """All good rows in one table with their `_source_line`; empties `goods` to free memory early."""
    names = [c.name for c in dataset.columns]
    lines = np.concatenate([g.lines for g in goods]) if goods else np.zeros(0, dtype=np.int64)
    tables = [g.table.select(names) for g in goods]
    goods.clear()
    if not tables:
        return pa.table({n: pa.array([], arrow_type(c.type)) for n, c in zip(names, dataset.columns, strict=True)})
    table = pa.concat_tables(tables)
    return pa.table({**{n: table[n] for n in names}, LINE_COLUMN: line_column(lines)})


def _check_all(parsed: Parsed, dataset: Dataset) -> tuple[int, list[Segment], list[BadRows]]:
    """(rows read, good rows, refused rows) of every segment; each segment's text is freed once checked
    (a streamed segment as soon as the next one is read). Raises `Reread` from a streaming reader."""
    rows, goods, bads = 0, [], []
    for segment in _segments(parsed):
        rows += segment.table.num_rows
        good, bad = check(segment, dataset)
        goods.append(good)
        bads.append(bad)
    return rows + len(parsed.rejects), goods, bads


def _segments(parsed: Parsed) -> Iterator[Segment]:
    if isinstance(parsed.segments, list):
        while parsed.segments:  # pop: each segment's text columns are freed once checked
            yield parsed.segments.pop(0)
    else:
        yield from parsed.segments


def transform(
    dataset: Dataset, data: Source, *, object_id: str, source: str, chunk: ByteRange | None = None,
    ready: Callable[[PartitionOutput], None] | None = None,
) -> TransformResult:
    """Read, check and partition one raw object or chunk.

    `data` is the whole raw object (bytes, a local path, a binary file or a pyarrow file such as
    an S3 input file); with `chunk`, only that byte range is read and line numbers start at
    `chunk.first_line`. `source` (e.g. the raw object's s3:// URI) is recorded in quarantine rows.
    `ready`, if given, is called with each partition (the one the result lists) as soon as it is
    sorted, so that its file can be encoded while the next ones are gathered; the result may still
    raise after that (nothing may be committed before it returns).
    Raises TransformError when the object as a whole cannot be read.
    """
    with paused_gc():  # contracts/nogc.py: why
        return _transform(dataset, data, object_id=object_id, source=source, chunk=chunk, ready=ready)


def _parse_all(text: Pieces, dataset: Dataset, object_id: str, chunk: ByteRange | None
               ) -> tuple[int, list[Segment], list[BadRows], Parsed]:
    """Parse and check every row, reading again the way a streaming reader asks for (`Reread`)."""
    start = chunk.start if chunk else 0
    how: str | None = None
    while True:
        try:
            parsed = parse(text, dataset, object_id=object_id, first_line=chunk.first_line if chunk else 1,
                           at_start=start == 0, how=how)
            rows_in, goods, bads = _check_all(parsed, dataset)
            return rows_in, goods, bads, parsed
        except Reread as again:  # rows streamed so far did not match lines: drop them, read again as asked
            if again.how == how:
                raise RuntimeError(f"object {object_id}: the reader asked to read again {how!r} twice") from again
            how = again.how


def _transform(
    dataset: Dataset, data: Source, *, object_id: str, source: str, chunk: ByteRange | None,
    ready: Callable[[PartitionOutput], None] | None,
) -> TransformResult:
    if chunk is not None and not can_split(dataset):
        raise TransformError(object_id, f"dataset {dataset.name!r} has a format that cannot be chunked")
    # CSV is read in pieces into pyarrow's memory and parsed as they arrive; JSON Lines, and CSV whose values
    # may hold newlines, are read whole, as bytes: their line and record indexes (contracts.records) use bytes'
    # methods
    streamed = dataset.format.type == "csv" and not dataset.format.embedded_newlines
    with open_text(data, chunk, object_id, piece=parse_csv.BLOCK_SIZE, streamed=streamed) as text:
        if not text.ahead:
            text.scanned()  # one CPU: the text's scans first (UTF-8, NUL), as a refused text needs no parse
        try:
            rows_in, goods, bads, parsed = _parse_all(text, dataset, object_id, chunk)
        except BaseException:
            # no value leaves before the scans pass: a text they refuse fails for that reason, whatever
            # the parse made of it or raised meanwhile
            text.scanned()
            raise
        text.scanned()
    del text
    partitions: list[PartitionOutput] = []

    def add_lineage(part: PartitionOutput) -> None:
        partitions.append(PartitionOutput(part.values, with_lineage(part.table, object_id)))
        if ready is not None:
            ready(partitions[-1])

    split_partitions(_with_lines(goods, dataset), dataset, add_lineage)
    quarantine, reasons = build_quarantine(dataset, bads, parsed.rejects, object_id=object_id, source=source)
    rows_good = sum(p.table.num_rows for p in partitions)
    if rows_in != rows_good + quarantine.num_rows:
        raise RuntimeError(  # a bug, never bad input: refuse rather than lose or invent rows
            f"object {object_id}: {rows_in} rows read but {rows_good} good + {quarantine.num_rows} quarantined"
        )
    return TransformResult(
        dataset=dataset.name,
        object_id=object_id,
        chunk_index=chunk.index if chunk else 0,
        partitions=partitions,
        quarantine=quarantine,
        rows_in=rows_in,
        rows_good=rows_good,
        rows_quarantined=quarantine.num_rows,
        quarantine_reasons=dict(reasons),
    )

"""Sorted runs for the merge: small input files are read whole, in groups, sorted and spilled.

A bin of small files can hold thousands of them; a k-way merge over all of them at once would keep
a decoded page of every file in memory (the partition, not a row group) and one file descriptor
each. So inputs are first grouped up to `run_rows` rows, read (in parallel threads), sorted and
written to the work directory as Arrow IPC runs (LZ4: cheap to write and read back in batches).
An input with at least `run_rows` rows is already a run on its own: it is streamed, not re-sorted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from services.compact.schema import conform

#: bytes gathered before each write to a spilled run
SPILL_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """A local input: its path and row count (from the commit manifest or the footer)."""

    path: Path
    rows: int


@dataclass(frozen=True)
class ParquetRun:
    """An input file that is big enough to be a run by itself (sorted by its writer)."""

    path: Path
    rows: int
    schema: pa.Schema
    dictionary: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        with open_parquet(self.path, self.dictionary) as f:
            for batch in f.iter_batches(batch_size=batch_rows, use_threads=False):
                yield conform(batch, self.schema, self.name)


@dataclass(frozen=True)
class SpilledRun:
    """A sorted run in the work directory (Arrow IPC file of batches of `batch_rows`)."""

    path: Path
    rows: int

    @property
    def name(self) -> str:
        return self.path.name

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        with pa.OSFile(str(self.path)) as f:
            reader = ipc.open_file(f)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)


#: data page encodings pyarrow cannot decode straight into a dictionary (`read_dictionary` fails with
#: "Not yet implemented: DecodeArrow of DictAccumulator for DeltaLengthByteArrayDecoder")
NO_DICTIONARY_DECODE = frozenset({"DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY"})


def dictionary_readable(metadata: pq.FileMetaData, dictionary: Sequence[str]) -> list[str]:
    """The columns of `dictionary` this file has and pyarrow can read as dictionaries.

    The merge's choice is made once for the bin, but each writer chose per file: a file of one row
    (a single-line object, a test's own append) writes even a repeating column as free text,
    DELTA_LENGTH_BYTE_ARRAY, which pyarrow cannot decode into a dictionary. Those columns are read as
    strings and `conform` casts them; a file written before a column existed simply lacks it.
    """
    if not dictionary:
        return []
    if metadata.num_row_groups == 0:
        return [c for c in dictionary if c in set(metadata.schema.names)]
    # names from the first row group's chunks, not `metadata.schema`: that object and its FileMetaData
    # reference each other, and with the GC paused for the rewrite every input's footer (about 35 KB
    # decoded) would stay in memory until the end: +37 MiB of peak RSS for 1,000 files
    first = metadata.row_group(0)
    columns = {first.column(i).path_in_schema: i for i in range(first.num_columns)}  # flat lake schemas
    present = [c for c in dictionary if c in columns]
    blocked: set[str] = set()
    for r in range(metadata.num_row_groups):  # only the chosen columns' chunks: this runs once per input
        group = metadata.row_group(r)
        blocked.update(c for c in present if NO_DICTIONARY_DECODE.intersection(group.column(columns[c]).encodings))
    return [c for c in present if c not in blocked]


def open_parquet(path: Path, dictionary: Sequence[str]) -> pq.ParquetFile:
    """The file with the chosen string columns read as dictionaries (those it has and can decode so)."""
    # local files: pre-buffering only adds IO-thread handoffs
    metadata = pq.read_metadata(str(path))
    return pq.ParquetFile(str(path), metadata=metadata, read_dictionary=dictionary_readable(metadata, dictionary)
                          or None, pre_buffer=False)


def read_whole(path: Path, schema: pa.Schema, dictionary: Sequence[str]) -> pa.Table:
    """One input file in the merge schema (strings chosen for dictionaries read as dictionaries).

    The file is read through an OS file handle, not a path (a path goes through pyarrow's filesystem
    layer, which costs more per file than decoding one of these small files' column chunks), and its
    footer is parsed once: the file is read asking for every chosen dictionary column, and only a file
    that cannot be read so (one lacking a column, or whose writer stored one as free text, which
    pyarrow refuses to decode into a dictionary: `dictionary_readable`) is opened again with the
    columns it can give. The footer's chunks are not inspected first: that Python walk was 4% of the
    reading CPU for 1,000 small files. No pre-buffering (local files: it only adds IO-thread handoffs).
    """
    with pa.OSFile(str(path)) as source:
        wanted = list(dictionary)
        try:
            table = pq.ParquetFile(source, read_dictionary=wanted or None, pre_buffer=False).read(use_threads=False)
        except (KeyError, OSError, pa.ArrowException):  # pyarrow reports the refusal as OSError; a real
            # fault raises again below
            readable = dictionary_readable(pq.read_metadata(source), wanted)
            table = pq.ParquetFile(source, read_dictionary=readable or None, pre_buffer=False).read(use_threads=False)
    if table.schema.equals(schema):
        return table
    return pa.Table.from_batches([conform(b, schema, path.name) for b in table.to_batches()], schema=schema)


def read_many(paths: Sequence[Path], schema: pa.Schema, dictionary: Sequence[str],
              pool: Executor | None = None) -> pa.Table:
    """Inputs read whole, concatenated in input order (no copy) with one dictionary per column.

    With a pool, files are read concurrently: pyarrow releases the GIL while it decodes.
    """
    if pool is not None and len(paths) > 1:
        tables = list(pool.map(lambda p: read_whole(p, schema, dictionary), paths))
    else:
        tables = [read_whole(p, schema, dictionary) for p in paths]
    return pa.concat_tables(tables).unify_dictionaries()


def sort_table(table: pa.Table, sort_key: Sequence[str]) -> pa.Table:
    """`table` sorted by `sort_key` (stable), moved once into new buffers.

    Only the key columns are combined before sorting (sorting a chunked key is several times slower);
    the other columns are taken straight from their chunks, never concatenated first.
    """
    if not sort_key or table.num_rows < 2:
        return table
    order = [(c, "ascending") for c in sort_key]
    keys = table.select(list(sort_key)).combine_chunks()
    return table.take(pc.sort_indices(keys, sort_keys=order))


def groups(inputs: Sequence[InputFile], run_rows: int) -> list[list[InputFile]]:
    """Consecutive inputs packed up to `run_rows` rows (a bigger input forms its own group)."""
    out: list[list[InputFile]] = []
    current: list[InputFile] = []
    rows = 0
    for f in inputs:
        if current and rows + f.rows > run_rows:
            out.append(current)
            current, rows = [], 0
        current.append(f)
        rows += f.rows
    if current:
        out.append(current)
    return out


def make_runs(
    inputs: Sequence[InputFile],
    schema: pa.Schema,
    sort_key: Sequence[str],
    dictionary: Sequence[str],
    workdir: Path,
    *,
    run_rows: int,
    batch_rows: int,
    pool: Executor | None = None,
    compression: str | None = None,
) -> list[ParquetRun | SpilledRun]:
    """Sorted runs covering every input row, in input order (the merge's tie-break).

    Groups are independent, so a pool's workers build runs at once (memory: workers x run_rows).
    """

    def build(n: int, group: list[InputFile]) -> ParquetRun | SpilledRun:
        if len(group) == 1 and group[0].rows >= run_rows // 2:
            return ParquetRun(group[0].path, group[0].rows, schema, tuple(dictionary))
        table = sort_table(read_many([f.path for f in group], schema, dictionary), sort_key)
        path = workdir / f"run-{n:05d}.arrow"
        options = ipc.IpcWriteOptions(compression=compression)
        # buffered: the IPC writer issues one write per buffer of every batch (thousands of small syscalls)
        with pa.OSFile(str(path), "wb") as raw, pa.BufferedOutputStream(raw, SPILL_BUFFER_BYTES) as sink, \
                ipc.new_file(sink, schema, options=options) as writer:
            for batch in table.to_batches(max_chunksize=batch_rows):
                writer.write_batch(batch)
        return SpilledRun(path, table.num_rows)

    planned = groups(inputs, run_rows)
    if pool is None:
        return [build(n, g) for n, g in enumerate(planned)]
    return list(pool.map(build, range(len(planned)), planned))

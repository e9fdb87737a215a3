"""How a lake file is written: the Parquet writer's choices, shared by every service that writes lake files.

Transform writes lake files, compaction rewrites them, erasure rewrites them again (taking most choices
from the file's own footer, and the rest, not recorded in Parquet, from here): readers and erasure rely
on these choices, so they are made once. Measured in docs/benchmarks.md (TPC-H orders):
* pyarrow writes Parquet bloom filters itself: one on each subject column lets erasure skip row groups
  without the subject. DuckDB's COPY was measured as the alternative writer and rejected: slower on the
  same tables, and it only writes bloom filters for dictionary-encoded columns, never for a subject id.
* compression per contract (zstd level 1 by default), statistics and the page index on, the sort order
  recorded as `sorting_columns`.
* free text (strings without a dictionary) as DELTA_LENGTH_BYTE_ARRAY: lengths stored apart from the
  bytes let zstd level 1 beat PLAIN at level 3 on size, for 14% less encoding CPU.
* dictionary pages only where a sample says values repeat (contracts/parquet_dictionaries.py).
* DELTA_BINARY_PACKED for `_source_line` and integer sort-key columns: near-monotonic values shrink
  to a few bits each.
* no Arrow schema in the footer: every reader (pyarrow, DuckDB, pandas, Athena) takes the types from
  Parquet's own logical types, so dictionary-encoded string columns read back as strings.
* decimals with precision <= 18 as INT32/INT64 (as DuckDB and Spark write them); Athena, Trino, Spark
  and DuckDB read them as decimal(p,s).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.arrow import write_batch_rows
from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN
from contracts.parquet_codecs import BY_WRITER
from contracts.parquet_dictionaries import Sampling, Spacing, repeating_columns

#: false-positive probability of the subject-column bloom filters
BLOOM_FPP = 0.05
#: zstd effort, per column: free text is written DELTA_LENGTH_BYTE_ARRAY (lengths apart from the bytes),
#: which at level 1 is smaller than PLAIN at level 3 for 14% less encoding CPU (TPC-H SF1 orders: 40.4 vs
#: 40.9 MB, docs/benchmarks.md); numbers, dates and dictionary codes: level 1 too
ZSTD_TEXT_LEVEL, ZSTD_LEVEL = 1, 1
#: encoding of free text (string columns without a dictionary); Athena (Trino), Spark, DuckDB and pyarrow
#: read it, and erasure's rewrite keeps it (services/erasure/rewrite.py)
TEXT_ENCODING = "DELTA_LENGTH_BYTE_ARRAY"
#: encoding of `_source_line` and integer sort-key columns
DELTA_ENCODING = "DELTA_BINARY_PACKED"

#: a transform's partition file decides on 1,024 of its rows; its dictionary columns were judged by the
#: pre-sort encoding on 8,192 rows of the whole object (services/transform/encoding.py) and are kept
FILE_SAMPLING = Sampling(1024, Spacing.ENDS, trust_dictionaries=True)
#: a compacted bin decides on its first row group, 8,192 rows (a thousand clerks are unique in a small
#: input file but repeat in a million-row row group); the dictionaries the merge moved were chosen on the
#: inputs, so they are judged again
ROW_GROUP_SAMPLING = Sampling(8192, Spacing.STRIDE, trust_dictionaries=False)


def writer_options(table: pa.Table, dataset: Dataset, *, ndv: int, sampling: Sampling) -> dict[str, Any]:
    """ParquetWriter keyword arguments for lake files of `table`'s schema, dictionaries decided on `table`'s rows.

    `ndv`: the rows of a row group, for which the bloom filters are sized.
    """
    schema = table.schema
    names = schema.names
    delta = [
        n for n in names if n == LINE_COLUMN or (n in dataset.sort_key and pa.types.is_integer(schema.field(n).type))
    ]
    candidates = [n for n in names if n not in delta and not pa.types.is_boolean(schema.field(n).type)]
    dictionary = repeating_columns(table, candidates, sampling)
    chosen = set(dictionary)
    text = [f.name for f in schema if _is_text(f.type) and f.name not in chosen]
    free = set(text)
    codec = BY_WRITER[dataset.storage.compression].writer
    sorting = pq.SortingColumn.from_ordering(schema, [(c, "ascending") for c in dataset.sort_key if c in names])
    return {
        "compression": codec,
        "compression_level": {f.name: ZSTD_TEXT_LEVEL if f.name in free else ZSTD_LEVEL for f in schema}
        if codec == "zstd" else None,
        "use_dictionary": dictionary,
        "column_encoding": {**dict.fromkeys(delta, DELTA_ENCODING), **dict.fromkeys(text, TEXT_ENCODING)},
        "write_statistics": True,
        "write_batch_size": write_batch_rows(table),
        "write_page_index": True,
        "store_decimal_as_integer": True,
        "store_schema": False,  # readers take types from Parquet alone: dictionary columns read back as strings
        "bloom_filter_options": {
            c: {"ndv": max(1, ndv), "fpp": BLOOM_FPP} for c in dataset.subject_columns if c in names
        },
        "sorting_columns": sorting or None,
    }


def _is_text(t: pa.DataType) -> bool:
    """A string column, or a dictionary of strings (the form the merge moves repeated strings in)."""
    return pa.types.is_string(t) or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))

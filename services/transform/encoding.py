"""Repeated strings dictionary-encoded before the partition sort, decided from a small, evenly spaced sample.

Moving int32 codes is far cheaper than moving strings, and the Parquet writer then needs no hashing;
the writer (contracts/lake_format.py) keeps these columns' dictionaries and decides on the others.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc

from contracts.parquet_dictionaries import Sampling, Spacing, repeating_columns

#: rows sampled per decision: enough that a column with a few thousand distinct values (clerks,
#: cities) in millions of rows is recognised as repeating (a 1,000-value column fills 63% of a
#: 1,024-row sample but 12% of an 8,192-row one); the writer decides per file with a smaller sample
SAMPLE_ROWS = 8192
OBJECT_SAMPLING = Sampling(SAMPLE_ROWS, Spacing.ENDS, trust_dictionaries=True)
#: rows below which columns are encoded one after the other (threads cost more than they save)
PARALLEL_ROWS = 65_536


def repeated_strings(table: pa.Table) -> list[str]:
    """The string columns whose values repeat enough to dictionary-encode them, in table order."""
    return repeating_columns(table, [f.name for f in table.schema if pa.types.is_string(f.type)], OBJECT_SAMPLING)


def encode_repeated_strings(table: pa.Table) -> pa.Table:
    """Dictionary-encode the string columns that repeat (values unchanged, only the layout).

    Columns are encoded side by side on the CPUs pyarrow may use (its hashing releases the GIL);
    a chunked column gets one dictionary for all its chunks.
    """
    names = repeated_strings(table)
    threads = min(pa.cpu_count(), len(names))
    if threads > 1 and table.num_rows >= PARALLEL_ROWS:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            encoded = list(pool.map(lambda n: pc.dictionary_encode(table.column(n)), names))
    else:
        encoded = [pc.dictionary_encode(table.column(n)) for n in names]
    for name, column in zip(names, encoded, strict=True):
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table

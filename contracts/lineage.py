"""Names of the columns the platform adds to the contract's: lineage (lake and quarantine) and quarantine-only.

Transform writes them, compaction carries them through, erasure follows `_source_object_id` and
`_source_line` back to the raw copies, and the Glue tables list them after the contract's columns, so
every reader must agree on them. Plain strings (no pyarrow): infra and ingest import this too.
"""

from __future__ import annotations

#: which raw object (contracts.layout.object_id) a row came from
OBJECT_COLUMN = "_source_object_id"
#: which 1-based line of that raw object
LINE_COLUMN = "_source_line"
#: the lineage columns as they follow the contract's columns, with their Glue (Hive) types
LINEAGE_COLUMNS: tuple[tuple[str, str], ...] = ((OBJECT_COLUMN, "string"), (LINE_COLUMN, "bigint"))

# Quarantine rows carry the lineage columns too, after these two:
#: why the row was refused (quotes row values: data, erased with the row, never logged)
REASON_COLUMN = "_reason"
#: the line's text when it could not be split into fields (else null; the fields hold the values)
RAW_COLUMN = "_raw"
#: and, last, the raw object's URI
SOURCE_COLUMN = "_source"

"""The `etl status` table: each landed object, how far it got, and why it stopped — readable at 80 columns.

The default layout has five columns and folds long values (source keys, reasons) onto more lines
instead of cutting them; `--wide` adds the separate source-key, chunk and row-count columns for
wide terminals. A failed object says whether it ended at once (permanent: nothing to redrive) or
after every retry (its message waits in the DLQ: `etl dlq redrive` once the cause is fixed).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

COLOURS = {"rejected": "red", "failed": "red", "ingested": "cyan", "chunked": "cyan", "transforming": "cyan"}


def detail_of(row: dict[str, Any]) -> str:
    """Why the object stopped (or a warning), with what to do about a failure."""
    reason = str(row.get("reason") or "")
    if row.get("stage") != "failed":
        return reason
    if row.get("permanent"):
        return f"permanent, not retried: {reason}"
    attempts = row.get("attempts")
    return f"after {attempts} attempts; message in the DLQ (`etl dlq redrive` once fixed): {reason}"


def chunks_of(row: dict[str, Any]) -> str:
    done = len(row.get("chunks_done") or [])
    return f"{done}/{row['chunk_count']}" if row.get("chunk_count") else "-"


def rows_of(row: dict[str, Any]) -> str:
    """`in → good + quarantined`, or '-' before transform counted anything."""
    if row.get("rows_in") is None:
        return "-"
    return f"{row['rows_in']} → {row.get('rows_good', 0)} + {row.get('rows_quarantined', 0)}q"


def status_table(rows: list[dict[str, Any]], *, title: str, wide: bool = False) -> Table:
    """Rows of the state table as a rich Table; nothing is ever cut, long values fold."""
    table = Table(title=title, show_lines=True)
    stage: dict[str, Any] = {"overflow": "fold"}
    if wide:
        for col in ("object", "dataset", "source key", "stage", "chunks", "rows", "good", "quarantined", "detail"):
            table.add_column(col, overflow="fold", no_wrap=col in ("object",))
    else:
        table.add_column("object", no_wrap=True, overflow="fold")
        table.add_column("dataset", **stage)
        table.add_column("stage", **stage)
        table.add_column("rows", **stage)
        table.add_column("source key · detail", ratio=1, min_width=20, **stage)
    for r in rows:
        st = r.get("stage", "?")
        coloured = f"[{COLOURS.get(st, 'green')}]{st}[/]"
        dataset, key, detail = str(r.get("dataset") or "-"), str(r.get("source_key") or ""), detail_of(r)
        if wide:
            table.add_row(r["object_id"], dataset, key, coloured, chunks_of(r), str(r.get("rows_in", "")),
                          str(r.get("rows_good", "")), str(r.get("rows_quarantined", "")), detail)
        else:
            chunks = chunks_of(r)
            rows_cell = rows_of(r) + (f"\n{chunks} chunks" if chunks != "-" else "")
            table.add_row(r["object_id"][:12], dataset, coloured, rows_cell, "\n".join(p for p in (key, detail) if p))
    return table

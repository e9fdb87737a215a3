"""`etl query "SQL"`: DuckDB over the catalog locally, Athena against a deployed env."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from etl import query as q
from etl import targets

app = typer.Typer(help=__doc__)
console = Console()
err = Console(stderr=True)
TABLE_ROWS = 1000


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class Engine(StrEnum):
    auto = "auto"
    duckdb = "duckdb"
    athena = "athena"


def write(result: pa.Table, fmt: Format, out: Path | None, title: str = "") -> None:
    """Render or save the result; parquet needs a file, the others go to stdout without --out."""
    if fmt is Format.parquet:
        if out is None:
            raise q.QueryError("--format parquet needs --out FILE")
        pq.write_table(result, out)
    elif fmt is Format.csv:
        pacsv.write_csv(result, str(out) if out else sys.stdout.buffer)
    elif fmt is Format.json:
        text = json.dumps(result.to_pylist(), default=_json_value, indent=1)
        if out:
            out.write_text(text + "\n")
        else:
            sys.stdout.write(text + "\n")
    else:
        table = Table(title=title or None)
        for name in result.column_names:
            table.add_column(name, justify="right" if _numeric(result.schema.field(name).type) else "left")
        for row in result.slice(0, TABLE_ROWS).to_pylist():
            table.add_row(*("NULL" if v is None else escape(str(v)) for v in row.values()))
        target = Console(file=out.open("w"), width=200) if out else console
        target.print(table)
        if result.num_rows > TABLE_ROWS:
            target.print(f"… {result.num_rows - TABLE_ROWS} more rows (use --format csv/json/parquet --out FILE)")


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _json_value(v: Any) -> Any:
    """Decimals as strings (exact), dates and timestamps as ISO 8601."""
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def run(sql: str, env: str, engine: Engine) -> q.QueryResult:
    """Pick the engine: the local env has no Athena, a deployed one defaults to it."""
    use = engine.value if engine is not Engine.auto else ("duckdb" if env == "local" else "athena")
    if env == "local":
        try:
            st = targets.local_state()
        except targets.TargetError as exc:
            raise q.QueryError(str(exc)) from exc
        os.environ.update(st.client_env())
        if use == "athena":
            raise q.QueryError("the local platform has no Athena: DuckDB stands in for it (drop --engine athena)")
    if use == "duckdb":
        return q.LocalEngine(q.database_name(env)).query(sql)
    with console.status("starting the Athena query…") as status:
        def progress(state: str, scanned: int, elapsed: float) -> None:
            status.update(f"Athena {state.lower()} · {_human(scanned)} scanned · {elapsed:.0f}s")

        return q.AthenaEngine(env).query(sql, progress)


@app.command("query")
def query_cmd(
    sql: Annotated[str, typer.Argument(help="One SQL statement, e.g. \"SELECT status, count(*) FROM orders "
                                            "GROUP BY 1\".")],
    env: Annotated[str, typer.Option("--env", "-e", help="`local` (DuckDB) or a deployed env (Athena).")] = "local",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    engine: Annotated[Engine, typer.Option(help="auto: DuckDB for local, Athena otherwise; duckdb also reads "
                                                "a deployed env's catalog with your credentials.")] = Engine.auto,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print files and partitions read.")] = False,
) -> None:
    """Run an analyst query over the compacted tables of an env and print or save the result."""
    try:
        result = run(sql, env, engine)
        write(result.table, fmt, out, title=f"{result.table.num_rows} row(s) · {result.engine}")
    except q.QueryError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    s = result.stats
    if verbose and result.engine == "duckdb":
        err.print(f"read {s.files} file(s), {_human(s.bytes)}, from {s.partitions_read} of {s.partitions_total} "
                  "partition(s)")
        for table, files in sorted(s.files_by_table.items()):
            for f in files:
                err.print(f"  {table}: {escape(f)}", soft_wrap=True)
    elif verbose:
        err.print(f"Athena query {result.query_id}: {_human(result.bytes_scanned)} scanned")
    if out:
        err.print(f"wrote {result.table.num_rows} row(s) to {out}")

"""Partition pruning for local queries: which partitions of each table a query can possibly read.

DuckDB parses the query (`json_serialize_sql`); for every reference to a catalog table, the conjuncts
of its WHERE (and of INNER JOIN conditions) that touch only that table's partition columns are
evaluated *by DuckDB itself* against the partition values, as strings like the query sees them. A
partition is read if it passes every such conjunct of at least one reference. Anything unclear — an
outer join, a column that may come from a subquery or an outer query, a qualifier it cannot resolve —
keeps every partition: pruning only ever skips partitions whose rows the query would filter out.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

_TEMPLATE = "SELECT __idx FROM __parts WHERE true"


class SqlError(ValueError):
    """The query does not parse; DuckDB's message says where."""


@dataclass(frozen=True)
class TableColumns:
    data: tuple[str, ...]
    partitions: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.data, *self.partitions)


@dataclass
class _Ref:
    table: str  # catalog table name, lower case
    name: str  # how the query refers to it: alias, else table name
    node: dict[str, Any]


def parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    """The one statement of `sql` as DuckDB's JSON syntax tree."""
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise SqlError(f"cannot parse the query: {tree.get('error_message')}")
    if len(tree["statements"]) != 1:
        raise SqlError(f"one statement per query, got {len(tree['statements'])}")
    return tree["statements"][0]["node"]


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _conjuncts(expr: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not expr:
        return []
    if expr.get("type") == "CONJUNCTION_AND":
        return [c for child in expr["children"] for c in _conjuncts(child)]
    return [expr]


class _Scope:
    """The FROM clause of one SELECT: catalog references it prunes and whether anything is opaque."""

    def __init__(self, catalog: Mapping[str, TableColumns], database: str) -> None:
        self.catalog, self.database = catalog, database
        self.refs: list[_Ref] = []
        self.opaque = False  # a subquery, table function or unknown table also provides columns
        self.outer = False  # an outer/other join: pruning a side could change the result
        self.conditions: list[dict[str, Any]] = []

    def add(self, node: dict[str, Any] | None) -> None:
        if not node or node.get("type") == "EMPTY":
            return
        kind = node.get("type")
        if kind == "BASE_TABLE":
            table = node["table_name"].lower()
            schema = (node.get("schema_name") or "").lower()
            if table in self.catalog and schema in ("", "main", self.database):
                self.refs.append(_Ref(table, (node.get("alias") or table).lower(), node))
            else:
                self.opaque = True
        elif kind == "JOIN":
            if node.get("join_type") != "INNER" or node.get("ref_type") not in ("REGULAR", "CROSS"):
                self.outer = True
            self.add(node.get("left"))
            self.add(node.get("right"))
            self.conditions += _conjuncts(node.get("condition"))
        else:
            self.opaque = True

    def owner(self, column_names: Sequence[str]) -> tuple[_Ref, str] | None:
        """The reference a column belongs to, if it is certain."""
        names = [n.lower() for n in column_names]
        if len(names) == 2:
            found = [r for r in self.refs if r.name == names[0]]
        elif len(names) == 1 and not self.opaque:
            found = [r for r in self.refs if names[0] in self.catalog[r.table].all]
        else:
            return None
        return (found[0], names[-1]) if len(found) == 1 else None

    def partition_only(self, expr: dict[str, Any]) -> _Ref | None:
        """The single reference whose partition columns are all `expr` touches; None if not so."""
        owners = set()
        for node in _nodes(expr):
            cls = node.get("class")
            if cls in ("SUBQUERY", "WINDOW", "STAR", "PARAMETER", "LAMBDA"):
                return None
            if cls == "COLUMN_REF":
                found = self.owner(node["column_names"])
                if found is None or found[1] not in self.catalog[found[0].table].partitions:
                    return None
                owners.add(id(found[0]))
        matches = [r for r in self.refs if id(r) in owners]
        return matches[0] if len(matches) == 1 else None


def pruning_conditions(
    con: duckdb.DuckDBPyConnection, sql: str, catalog: Mapping[str, TableColumns], database: str = ""
) -> dict[str, list[list[dict[str, Any]]] | None]:
    """Per referenced catalog table: for each reference, the partition-only conjuncts (as syntax trees)
    that must all hold; None when some reference cannot be pruned (then every partition is read)."""
    root = parse(con, sql)
    result: dict[str, list[list[dict[str, Any]]] | None] = {}
    handled: set[int] = set()
    for node in _nodes(root):
        if node.get("type") != "SELECT_NODE":
            continue
        scope = _Scope(catalog, database.lower())
        scope.add(node.get("from_table"))
        conjuncts = _conjuncts(node.get("where_clause")) + scope.conditions
        for ref in scope.refs:
            handled.add(id(ref.node))
            if result.get(ref.table, []) is None:
                continue
            if scope.outer:
                result[ref.table] = None
                continue
            mine = [c for c in conjuncts if scope.partition_only(c) is ref]
            result.setdefault(ref.table, []).append(mine)  # type: ignore[union-attr]
    for node in _nodes(root):  # a catalog table referenced where no SELECT scope saw it: read it whole
        if node.get("type") == "BASE_TABLE" and id(node) not in handled and node["table_name"].lower() in catalog:
            result[node["table_name"].lower()] = None
    for table, refs in result.items():
        if refs is not None and any(not conds for conds in refs):
            result[table] = None  # one unrestricted reference reads everything
    return result


def _unqualified(expr: dict[str, Any]) -> dict[str, Any]:
    expr = copy.deepcopy(expr)
    for node in _nodes(expr):
        if node.get("class") == "COLUMN_REF":
            node["column_names"] = [node["column_names"][-1]]
    return expr


def select_partitions(
    con: duckdb.DuckDBPyConnection, values: pa.Table, conditions: list[list[dict[str, Any]]] | None
) -> list[int]:
    """Row indexes of `values` (one row per partition, string columns) that some reference can read."""
    if conditions is None:
        return list(range(values.num_rows))
    parts = values.append_column("__idx", pa.array(range(values.num_rows), pa.int64()))
    con.register("__parts", parts)
    template = json.loads(con.execute("SELECT json_serialize_sql(?)", [_TEMPLATE]).fetchall()[0][0])
    keep: set[int] = set()
    try:
        for conds in conditions:
            selected = set(range(values.num_rows))
            for cond in conds:
                stmt = copy.deepcopy(template)
                stmt["statements"][0]["node"]["where_clause"] = _unqualified(cond)
                query = con.execute("SELECT json_deserialize_sql(?)", [json.dumps(stmt)]).fetchall()[0][0]
                # a conjunct DuckDB cannot evaluate on the values narrows nothing; the real query reports it
                with contextlib.suppress(duckdb.Error):
                    selected &= {row[0] for row in con.execute(query).fetchall()}
            keep |= selected
    finally:
        con.unregister("__parts")
    return sorted(keep)

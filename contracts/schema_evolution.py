"""Which contract changes a lake that already holds files can take, and the versions files are written with.

A contract's *shape* is what files and the Glue table depend on: columns (name, type, nullable),
partitioning and subject columns. Everything else (storage, compaction thresholds, input format,
descriptions, sort key) may change freely. A shape change is compared with a baseline — the
contract's lock file (`contracts/datasets/<name>.lock.json`, the reviewed history of versions) or
the Glue table as deployed — and every difference is classified:

* allowed: a new nullable column (old files read NULL for it), a widening Parquet readers apply on
  read (int32 → int64, float32 → float64, decimal(p,s) → decimal(p',s) with p' > p), a non-nullable
  column becoming nullable, a new dataset;
* breaking: a dropped or renamed column, any other type change, a new non-nullable column, a
  nullable column becoming non-nullable, a change of partitioning or subject columns (once the
  dataset holds data).

Breaking changes are refused before anything is deployed; the way out is a new dataset (and a copy
of the data into it) or an explicit migration. See docs/design/schema-evolution.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contracts.datasets import Dataset

#: Parquet footer key-value metadata every lake file carries (transform and compaction writers)
FOOTER_DATASET = "etl.contract.dataset"
FOOTER_VERSION = "etl.contract.version"
FOOTER_FINGERPRINT = "etl.contract.fingerprint"
#: Glue table parameters recording the contract the table was deployed from
TABLE_VERSION = "etl.contract.version"
TABLE_FINGERPRINT = "etl.contract.fingerprint"
TABLE_SHAPE = "etl.contract.shape"
UNLOCKED = "unlocked"
LOCK_SUFFIX = ".lock.json"

_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")
_WIDER_INT = {("int32", "int64")}
_WIDER_FLOAT = {("float32", "float64")}
#: Glue (Hive DDL) type -> contract type, to read a deployed table back as a shape
_FROM_GLUE = {"string": "string", "int": "int32", "bigint": "int64", "float": "float32", "double": "float64",
              "boolean": "bool", "date": "date", "timestamp": "timestamp"}


class EvolutionError(ValueError):
    """A contract change would break the lake; the message lists what and what to do instead."""


# -- shape ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnShape:
    name: str
    type: str
    nullable: bool | None = True  # None: unknown (a table read back from Glue does not say)


@dataclass(frozen=True)
class Shape:
    """What the files and the table of a dataset depend on."""

    columns: tuple[ColumnShape, ...]
    partitioning: tuple[tuple[str, str, str], ...] = ()  # (name, source, transform); source "?" if unknown
    subject_columns: tuple[str, ...] | None = ()  # None: unknown

    @classmethod
    def of(cls, ds: Dataset) -> Shape:
        return cls(
            columns=tuple(ColumnShape(c.name, c.type, c.nullable) for c in ds.columns),
            partitioning=tuple((p.name, p.source, p.transform) for p in ds.partitioning),
            subject_columns=tuple(ds.subject_columns),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in self.columns],
            "partitioning": [{"name": n, "source": s, "transform": t} for n, s, t in self.partitioning],
            "subject_columns": list(self.subject_columns or ()),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shape:
        return cls(
            columns=tuple(ColumnShape(c["name"], c["type"], c.get("nullable", True)) for c in data["columns"]),
            partitioning=tuple((p["name"], p["source"], p.get("transform", "identity"))
                               for p in data.get("partitioning", ())),
            subject_columns=tuple(data.get("subject_columns", ())),
        )

    @property
    def fingerprint(self) -> str:
        """Stable digest of the shape: two contracts with the same fingerprint write the same files."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def column(self, name: str) -> ColumnShape | None:
        return next((c for c in self.columns if c.name == name), None)


def fingerprint(ds: Dataset) -> str:
    return Shape.of(ds).fingerprint


def glue_type(contract_type: str) -> str:
    """The Glue/Athena (Hive DDL) type of a contract type."""
    from contracts.datasets import GLUE_TYPES

    return GLUE_TYPES.get(contract_type, contract_type)


def glue_columns(ds: Dataset) -> list[tuple[str, str]]:
    """The table's data columns as Athena sees them: contract columns, then the lineage columns."""
    from contracts.lineage import LINEAGE_COLUMNS

    return [(c.name, glue_type(c.type)) for c in ds.columns] + list(LINEAGE_COLUMNS)


def table_parameters(ds: Dataset) -> dict[str, str]:
    """The Glue table parameters recording the contract a table was deployed from."""
    shape = Shape.of(ds)
    version = getattr(ds, "version", None)
    return {TABLE_VERSION: str(version) if version else UNLOCKED, TABLE_FINGERPRINT: shape.fingerprint,
            TABLE_SHAPE: json.dumps(shape.to_json(), sort_keys=True, separators=(",", ":"))}


def contract_type(glue: str) -> str:
    t = glue.strip().lower().replace(" ", "")
    return _FROM_GLUE.get(t, t)


# -- classifying a change -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One difference between the baseline and the contract, and what it does to the lake."""

    kind: str  # add | widen | relax | drop | rename | retype | tighten | add-required | partitioning | subjects
    subject: str  # the column, or "partitioning" / "subject columns"
    before: str
    after: str
    breaking: bool
    effect: str  # allowed: what readers and writers do; breaking: why, and what to do instead


def widens(old: str, new: str) -> bool:
    """Whether values of `old` read losslessly as `new` in every reader (Athena/Trino, Spark, DuckDB, pyarrow)."""
    if (old, new) in _WIDER_INT | _WIDER_FLOAT:
        return True
    a, b = _DECIMAL.match(old), _DECIMAL.match(new)
    return bool(a and b and a.group(2) == b.group(2) and int(b.group(1)) > int(a.group(1)))


_NEW_DATASET = "put the data in a new dataset (a new contract) and copy it over, or migrate explicitly: " \
               "rewrite every file and re-create the table (docs/design/schema-evolution.md § Migrations)"


def diff(old: Shape, new: Shape, *, holds_data: bool = True) -> list[Change]:
    """Every difference from `old` to `new`, classified (column order is free: Parquet is read by name)."""
    changes: list[Change] = []
    dropped = [c for c in old.columns if new.column(c.name) is None]
    added = [c for c in new.columns if old.column(c.name) is None]
    renamed: dict[str, str] = {}
    for d in dropped:  # a drop and an add of the same type look like a rename: say so
        match = next((a for a in added if a.type == d.type and a.name not in renamed.values()), None)
        if match is not None:
            renamed[d.name] = match.name
    for d in dropped:
        if d.name in renamed:
            changes.append(Change("rename", d.name, d.name, renamed[d.name], True,
                                  f"renaming is dropping {d.name!r}: files written before keep the values under the "
                                  f"old name and would read NULL as {renamed[d.name]!r}; keep {d.name!r} and add the "
                                  f"new column beside it, or {_NEW_DATASET}"))
        else:
            changes.append(Change("drop", d.name, d.type, "-", True,
                                  f"dropping {d.name!r} hides data every file still holds (and erasure and "
                                  f"compaction would have to drop it); keep the column (stop filling it: it may be "
                                  f"nullable), or {_NEW_DATASET}"))
    for a in added:
        if a.name in renamed.values():
            continue
        if a.nullable is False:
            changes.append(Change("add-required", a.name, "-", f"{a.type} not null", True,
                                  f"files already written have no {a.name!r}: it reads NULL there, so it cannot be "
                                  "non-nullable; add it with nullable = true"))
        else:
            changes.append(Change("add", a.name, "-", a.type, False,
                                  f"new files carry {a.name!r}; files already written read NULL for it"))
    for o in old.columns:
        n = new.column(o.name)
        if n is None:
            continue
        if n.type != o.type:
            if widens(o.type, n.type):
                changes.append(Change("widen", o.name, o.type, n.type, False,
                                      f"files already written keep {o.type}; readers widen it to {n.type} on read"))
            else:
                changes.append(Change("retype", o.name, o.type, n.type, True,
                                      f"{o.type} -> {n.type} is not a widening every reader applies (allowed: "
                                      f"int32->int64, float32->float64, decimal precision up at the same scale); "
                                      f"files already written could not be read as {n.type} (Athena fails the "
                                      f"query); add a new column of type {n.type} instead, or {_NEW_DATASET}"))
        if o.nullable is not None and n.nullable is not None and o.nullable != n.nullable:
            if n.nullable:
                changes.append(Change("relax", o.name, "not null", "nullable", False,
                                      "new files may hold NULL; nothing to rewrite (every file column is OPTIONAL)"))
            else:
                changes.append(Change("tighten", o.name, "nullable", "not null", True,
                                      f"files already written may hold NULL in {o.name!r}; keep it nullable "
                                      "(validate new data upstream), or " + _NEW_DATASET))
    if old.partitioning != new.partitioning and _partitioning_differs(old.partitioning, new.partitioning):
        before = ", ".join(f"{n}={t}({s})" for n, s, t in old.partitioning) or "none"
        after = ", ".join(f"{n}={t}({s})" for n, s, t in new.partitioning) or "none"
        changes.append(Change("partitioning", "partitioning", before, after, holds_data,
                              ("every file sits under a partition of the old layout and every Glue partition "
                               f"carries the old keys; {_NEW_DATASET}") if holds_data
                              else "the table holds no data yet: it is re-created with the new keys"))
    if (old.subject_columns is not None and new.subject_columns is not None
            and tuple(old.subject_columns) != tuple(new.subject_columns)):
        changes.append(Change("subjects", "subject columns", ", ".join(old.subject_columns) or "none",
                              ", ".join(new.subject_columns) or "none", holds_data,
                              ("files were written with bloom filters and erasure evidence for the old subject "
                               f"columns: erasure would miss subjects in files already written; {_NEW_DATASET}")
                              if holds_data else "the table holds no data yet"))
    return changes


def _partitioning_differs(old: Sequence[tuple[str, str, str]], new: Sequence[tuple[str, str, str]]) -> bool:
    """Compare partition keys; a side read from Glue knows only the names ("?" source/transform)."""
    if len(old) != len(new):
        return True
    for (on, os_, ot), (nn, ns, nt) in zip(old, new, strict=True):
        if on != nn or ("?" not in (os_, ns) and (os_, ot) != (ns, nt)):
            return True
    return False


# -- lock files: the reviewed history of versions ---------------------------------------------------------------
@dataclass
class Lock:
    """`<name>.lock.json`: every version of a dataset's shape, oldest first; the last is what is deployable."""

    dataset: str
    versions: list[tuple[int, Shape]] = field(default_factory=list)

    @property
    def latest(self) -> tuple[int, Shape] | None:
        return self.versions[-1] if self.versions else None

    def version_of(self, fp: str) -> int | None:
        for version, shape in reversed(self.versions):
            if shape.fingerprint == fp:
                return version
        return None

    def shape(self, version: int) -> Shape:
        for v, shape in self.versions:
            if v == version:
                return shape
        raise KeyError(f"{self.dataset} has no version {version} in its lock")

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "versions": [
            {"version": v, "fingerprint": s.fingerprint, **s.to_json()} for v, s in self.versions]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lock:
        return cls(data["dataset"], [(int(v["version"]), Shape.from_json(v)) for v in data["versions"]])


def lock_path(name: str, directory: Path) -> Path:
    return directory / f"{name}{LOCK_SUFFIX}"


def read_lock(name: str, directory: Path) -> Lock | None:
    path = lock_path(name, directory)
    if not path.exists():
        return None
    try:
        return Lock.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise EvolutionError(f"{path}: not a valid lock file ({exc}); restore it from version control") from exc


def write_lock(lock: Lock, directory: Path) -> Path:
    """Write the lock for review: one line per column and partition key, so a diff shows what changed."""
    def items(values: list[Any]) -> str:
        return "[\n" + ",\n".join(f"        {json.dumps(v)}" for v in values) + "\n      ]" if values else "[]"

    versions = []
    for v in lock.to_json()["versions"]:
        versions.append(
            "    {\n"
            f'      "version": {v["version"]},\n      "fingerprint": {json.dumps(v["fingerprint"])},\n'
            f'      "columns": {items(v["columns"])},\n      "partitioning": {items(v["partitioning"])},\n'
            f'      "subject_columns": {json.dumps(v["subject_columns"])}\n    }}'
        )
    text = f'{{\n  "dataset": {json.dumps(lock.dataset)},\n  "versions": [\n' + ",\n".join(versions) + "\n  ]\n}\n"
    json.loads(text)  # the hand-laid layout is still JSON
    path = lock_path(lock.dataset, directory)
    path.write_text(text, encoding="utf-8")
    return path


# -- evolution reports ----------------------------------------------------------------------------------------------
@dataclass
class Evolution:
    """A contract compared with one baseline."""

    dataset: str
    baseline: str  # e.g. "lock v2", "deployed table (v2)", "none: a new dataset"
    base_version: int | None
    version: int | None  # the version the contract is (locked) or would be once locked
    locked: bool
    changes: list[Change]

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def allowed(self) -> list[Change]:
        return [c for c in self.changes if not c.breaking]

    def message(self) -> str:
        """What would break and what to do, one line per change (for errors that stop a deploy)."""
        lines = [f"{self.dataset}: contract change against {self.baseline} would break the lake:"]
        lines += [f"  - {c.kind} {c.subject}: {c.before} -> {c.after}: {c.effect}" for c in self.breaking]
        return "\n".join(lines)


def against_lock(ds: Dataset, directory: Path) -> Evolution:
    """The contract against its lock's latest version (a missing lock: a new dataset, version 1)."""
    lock = read_lock(ds.name, directory)
    shape = Shape.of(ds)
    if lock is None or lock.latest is None:
        return Evolution(ds.name, "none: a new dataset", None, 1, False, [])
    version, base = lock.latest
    locked = base.fingerprint == shape.fingerprint
    return Evolution(ds.name, f"lock v{version}", version, version if locked else version + 1, locked,
                     [] if locked else diff(base, shape))


def table_shape(table: Mapping[str, Any], lineage: Iterable[str] = ()) -> tuple[Shape, int | None]:
    """A deployed Glue table (get_table's `Table`) as a shape, and the contract version it records.

    Tables deployed by this platform record their contract's shape in their parameters; without it
    (deployed before versions existed) the columns are read back and nullability is unknown.
    """
    params = table.get("Parameters") or {}
    version = params.get(TABLE_VERSION)
    version_n = int(version) if version and version.isdigit() else None
    recorded = params.get(TABLE_SHAPE)
    if recorded:
        return Shape.from_json(json.loads(recorded)), version_n
    skip = set(lineage)
    cols = [c for c in (table.get("StorageDescriptor") or {}).get("Columns", []) if c["Name"] not in skip]
    return Shape(
        columns=tuple(ColumnShape(c["Name"], contract_type(c["Type"]), None) for c in cols),
        partitioning=tuple((k["Name"], "?", "?") for k in table.get("PartitionKeys", [])),
        subject_columns=None,
    ), version_n


def against_table(ds: Dataset, table: Mapping[str, Any] | None, *, holds_data: bool,
                  lineage: Iterable[str] = ()) -> Evolution:
    """The contract against the table as deployed (None: not deployed yet, so a new dataset)."""
    version = getattr(ds, "version", None)
    if table is None:
        return Evolution(ds.name, "none: not deployed yet", None, version, version is not None, [])
    base, base_version = table_shape(table, lineage)
    label = f"deployed table (v{base_version})" if base_version else "deployed table"
    return Evolution(ds.name, label, base_version, version, version is not None,
                     diff(base, Shape.of(ds), holds_data=holds_data))


def next_lock(ds: Dataset, directory: Path) -> tuple[Lock, Evolution]:
    """The lock with the contract recorded as its next version; EvolutionError if the change breaks."""
    evolution = against_lock(ds, directory)
    if evolution.breaking:
        raise EvolutionError(evolution.message())
    lock = read_lock(ds.name, directory) or Lock(ds.name)
    if not evolution.locked:
        lock.versions.append((evolution.version or 1, Shape.of(ds)))
    return lock, evolution


def locked_dataset(ds: Dataset, version: int, directory: Path) -> Dataset:
    """The contract as it was at `version` (its shape from the lock, everything else as now).

    For tools and tests that must write or read files of an older version.
    """
    lock = read_lock(ds.name, directory)
    if lock is None:
        raise KeyError(f"{ds.name} has no lock file")
    shape = lock.shape(version)
    by_name = {c.name: c for c in ds.columns}
    columns = []
    for c in shape.columns:
        now = by_name.get(c.name)
        base = now.model_dump() if now is not None else {"name": c.name}
        columns.append({**base, "type": c.type, "nullable": c.nullable if c.nullable is not None else True})
    data = ds.model_dump(exclude={"version"})
    data.update(columns=columns, subject_columns=list(shape.subject_columns or ()),
                partitioning=[{"name": n, "source": s, "transform": t} for n, s, t in shape.partitioning],
                sort_key=[k for k in ds.sort_key if shape.column(k) is not None])
    return type(ds).model_validate(data).model_copy(update={"version": version})


# -- files ------------------------------------------------------------------------------------------------------
def footer_metadata(ds: Dataset) -> dict[str, str]:
    """Key-value metadata of every lake file: the contract (name, version, fingerprint) it was written with."""
    version = getattr(ds, "version", None)
    return {FOOTER_DATASET: ds.name, FOOTER_VERSION: str(version) if version else UNLOCKED,
            FOOTER_FINGERPRINT: fingerprint(ds)}


@dataclass(frozen=True)
class FileContract:
    dataset: str | None
    version: int | None  # None: written before versions were recorded, or by an unlocked contract
    fingerprint: str | None


def file_contract(metadata: Mapping[bytes | str, bytes | str] | None) -> FileContract:
    """The contract a file was written with, from its footer (`pq.read_metadata(path).metadata`)."""
    def get(key: str) -> str | None:
        if not metadata:
            return None
        raw = metadata.get(key.encode()) if key.encode() in metadata else metadata.get(key)
        return raw.decode() if isinstance(raw, bytes) else raw

    version = get(FOOTER_VERSION)
    return FileContract(get(FOOTER_DATASET), int(version) if version and version.isdigit() else None,
                        get(FOOTER_FINGERPRINT))

"""Dataset contracts: one declarative TOML file per dataset, loaded and validated here.

Glue tables, transform validation, compaction sizing and erasure scope all derive from a contract,
so this module is the single place a dataset's shape is defined.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DATASETS_DIR = Path(__file__).parent / "datasets"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DECIMAL_RE = re.compile(r"^decimal\((\d{1,2}),(\d{1,2})\)$")
SIMPLE_TYPES = {"string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp"}

#: contract type -> Glue/Athena (Hive DDL) type
GLUE_TYPES = {
    "string": "string",
    "int32": "int",
    "int64": "bigint",
    "float32": "float",
    "float64": "double",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


class ContractError(ValueError):
    """A dataset contract file is invalid; the message names the file and what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str
    type: str
    nullable: bool = True
    personal: bool = False
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"column name {v!r} must be lower snake case (a-z, 0-9, _)")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.replace(" ", "")
        if v not in SIMPLE_TYPES and not DECIMAL_RE.match(v):
            raise ValueError(f"type {v!r} is not one of {sorted(SIMPLE_TYPES)} or decimal(p,s)")
        return v

    @property
    def glue_type(self) -> str:
        return GLUE_TYPES.get(self.type, self.type)


class InputFormat(_Strict):
    type: Literal["csv", "jsonl"] = "csv"
    delimiter: str = ","
    header: bool = True
    quote: str = '"'
    #: True when quoted CSV values may contain newlines (read as one value); False: a record whose quoted
    #: value spans lines is quarantined whole. Either way chunks are cut on record boundaries (contracts/records.py).
    embedded_newlines: bool = False


class PartitionKey(_Strict):
    name: str
    source: str
    transform: Literal["identity", "year", "month", "day"] = "identity"


class Storage(_Strict):
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    target_file_mb: int = Field(256, ge=128, le=512)
    #: compaction starts when a partition holds this many files under `small_file_ratio` of target
    compaction_min_files: int = Field(16, ge=2)
    small_file_ratio: float = Field(0.75, gt=0, le=1)
    row_group_rows: int = Field(1_000_000, ge=1000)


class Dataset(_Strict):
    name: str
    description: str = ""
    columns: tuple[Column, ...]
    subject_columns: tuple[str, ...] = ()
    partitioning: tuple[PartitionKey, ...] = ()
    sort_key: tuple[str, ...] = ()
    format: InputFormat = InputFormat()
    storage: Storage = Storage()
    raw_retention_days: int = Field(30, ge=1, le=3650)
    #: the lock file's version of this shape (contracts/schema_evolution.py); set on load, never in the TOML.
    #: None: the shape is not locked yet (`etl datasets lock` records it)
    version: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"dataset name {v!r} must be lower snake case (a-z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _references(self) -> Dataset:
        names = [c.name for c in self.columns]
        if not names:
            raise ValueError("a dataset needs at least one column")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in {names}")
        for ref, what in [(s, "subject column") for s in self.subject_columns] + [
            (s, "sort key") for s in self.sort_key
        ] + [(p.source, f"partition source of {p.name!r}") for p in self.partitioning]:
            if ref not in names:
                raise ValueError(f"{what} {ref!r} is not a column (columns: {', '.join(names)})")
        for s in self.subject_columns:
            if not self.column(s).personal:
                raise ValueError(f"subject column {s!r} must also be marked personal = true")
        for p in self.partitioning:
            if p.name in names:
                raise ValueError(f"partition key {p.name!r} clashes with a column of the same name")
            src = self.column(p.source)
            if p.transform != "identity" and src.type not in ("date", "timestamp"):
                raise ValueError(f"partition {p.name!r}: {p.transform} needs a date/timestamp source")
            if src.personal:  # partition values are S3 keys: they reach logs, traces, access logs and Glue in clear
                raise ValueError(f"partition {p.name!r}: source {p.source!r} is personal data; partition values "
                                 "appear in object keys, logs and traces, so partition by a non-personal column")
        return self

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def personal_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.personal)

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.partitioning)

    @property
    def target_file_bytes(self) -> int:
        return self.storage.target_file_mb * 1024 * 1024


def parse_dataset(text: str, origin: str = "<string>") -> Dataset:
    """Parse one contract; errors name the origin and every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(f"{origin}: not valid TOML: {exc}") from exc
    if "version" in data:
        raise ContractError(f"{origin}: version: not set in the contract; `etl datasets lock` records each "
                            "version of the shape in <name>.lock.json beside it")
    try:
        return Dataset.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'dataset'}: {e['msg']}" for e in exc.errors()
        )
        raise ContractError(f"{origin}: {problems}") from exc


def load_dataset_file(path: Path) -> Dataset:
    ds = parse_dataset(path.read_text(encoding="utf-8"), str(path))
    if ds.name != path.stem:
        raise ContractError(f"{path}: dataset name {ds.name!r} must match the file name {path.stem!r}")
    return with_version(ds, path.parent)


def with_version(ds: Dataset, directory: Path) -> Dataset:
    """The contract with the version its lock file gives its shape (None when the shape is not locked)."""
    from contracts import schema_evolution as evolution  # it imports this module

    try:
        lock = evolution.read_lock(ds.name, directory)
    except evolution.EvolutionError as exc:
        raise ContractError(str(exc)) from exc
    version = lock.version_of(evolution.fingerprint(ds)) if lock else None
    return ds.model_copy(update={"version": version})


#: local platform and benchmarks only: more directories of contracts (os.pathsep-separated), e.g. bench/ for
#: the TPC-H contract; the local platform's program, function hosts and CLI all inherit it
EXTRA_DATASETS_ENV = "ETL_EXTRA_DATASETS"


@cache
def load_datasets(directory: Path = DATASETS_DIR) -> dict[str, Dataset]:
    """All contracts in a directory, by name (cached: contracts ship with the code)."""
    found = {p.stem: load_dataset_file(p) for p in sorted(directory.glob("*.toml"))}
    if directory == DATASETS_DIR:
        for extra in filter(None, os.environ.get(EXTRA_DATASETS_ENV, "").split(os.pathsep)):
            found.update({p.stem: load_dataset_file(p) for p in sorted(Path(extra).glob("*.toml"))})
    return found


def get_dataset(name: str) -> Dataset | None:
    return load_datasets().get(name)

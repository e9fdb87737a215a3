"""Partition commits: how transform (append), compaction and erasure (replace) change one partition.

Readers see exactly the objects under the Glue partition's location, which is one *generation*
prefix `<dataset>/<partition>/gen=<n>/` (see contracts.lake). Every change goes through one item
per partition in the state table, written only with conditional puts:

1. *intent*: the writer records what it will do (files to add from staging, names to remove, the
   target generation) together with a *claim* (its attempt id, valid until its deadline plus a
   margin). While an intent is pending nobody else starts a change, so commits are serialised.
2. *roll forward*: the claimant makes the change visible in one step - an append of one file is one
   copy into the live generation; anything else builds generation n+1 (copy survivors, copy new
   files) and flips the Glue location - then records the op and clears the intent.
A crashed attempt leaves its intent; once the claim expires, any writer, a retry or `cleanup` takes
it over and rolls it forward from the start (every step is idempotent). Only the claimant touches
the catalog, so a stale flip cannot land after a newer one (claims outlive their holder's deadline,
and no request of an attempt runs past its deadline). The full argument and the cost of each
commit are in docs/design/partition-commits.md.

Modules: `errors` (what callers catch), `model` (refs, files, results, settings), `ports` (the
storage protocols), `state` (the state item, internal), `committer` (the protocol) and the AWS
backends `s3`, `dynamodb`, `glue`. Everything public is re-exported here, so
`from contracts.commits import X` is the one import callers need.
"""

from contracts.commits.committer import PartitionCommitter
from contracts.commits.dynamodb import DynamoStateTable
from contracts.commits.errors import (
    CatalogMismatch,
    CommitError,
    ConditionFailed,
    DeadlineExceeded,
    MissingObject,
    ObjectNotFound,
    OpIdReused,
    PartitionBusy,
    ReplaceConflict,
)
from contracts.commits.glue import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE, GlueCatalog
from contracts.commits.model import (
    Append,
    CleanupReport,
    CommitResult,
    CommitSettings,
    FileEntry,
    FileToStage,
    NewFile,
    ObjectStat,
    PartitionRef,
    PartitionState,
)
from contracts.commits.ports import Catalog, Clock, Item, ObjectStore, StateTable, SystemClock
from contracts.commits.s3 import S3ObjectStore
from contracts.commits.state import GC_PK, OP_SK_PREFIX, STATE_SK

__all__ = [
    "GC_PK",
    "OP_SK_PREFIX",
    "PARQUET_INPUT",
    "PARQUET_OUTPUT",
    "PARQUET_SERDE",
    "STATE_SK",
    "Append",
    "Catalog",
    "CatalogMismatch",
    "CleanupReport",
    "Clock",
    "CommitError",
    "CommitResult",
    "CommitSettings",
    "ConditionFailed",
    "DeadlineExceeded",
    "DynamoStateTable",
    "FileEntry",
    "FileToStage",
    "GlueCatalog",
    "Item",
    "MissingObject",
    "NewFile",
    "ObjectNotFound",
    "ObjectStat",
    "ObjectStore",
    "OpIdReused",
    "PartitionBusy",
    "PartitionCommitter",
    "PartitionRef",
    "PartitionState",
    "ReplaceConflict",
    "S3ObjectStore",
    "StateTable",
    "SystemClock",
]

"""A service's settings, written once: infra writes them out as environment variables, the service reads them back.

Each field names its environment variable (the field's alias) and carries the one default, so the
names and defaults are not repeated in infra/ and services/. Infra builds the tunable part from
Pulumi config (`etl:` keys; a key left unset takes the model's default) and writes `to_environ()`;
the resources it creates (bucket names, queue URLs: Pulumi outputs) go under `env_var(field)`. The
service calls `from_environ()`; a test checks that infra sets every variable the model requires.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY = 86400.0


class EnvSettings(BaseModel):
    """Fields with an alias read from and write to that environment variable."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def env_var(cls, field: str) -> str:
        """The environment variable of a field."""
        alias = cls.model_fields[field].alias
        if not alias:
            raise KeyError(f"{cls.__name__}.{field} is not read from the environment")
        return alias

    @classmethod
    def required_env(cls) -> list[str]:
        """Variables without a default: infra must set them."""
        return sorted(f.alias for f in cls.model_fields.values() if f.alias and f.is_required())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read every field from its variable; an empty or missing one takes the default."""
        e = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in cls.model_fields.values():
            if f.alias and (e.get(f.alias) or (f.is_required() and f.alias in e)):
                values[f.alias] = e[f.alias]
        return cls.model_validate(values)

    @classmethod
    def variables(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values given by field name (infra: Pulumi outputs) under their variables' names."""
        return {cls.env_var(k): v for k, v in values.items()}

    def to_environ(self) -> dict[str, str]:
        """Every field set (None: left out) as its variable's text, booleans as true/false, as `from_environ`
        reads it back."""
        out = {}
        for name, f in type(self).model_fields.items():
            v = getattr(self, name)
            if not f.alias or v is None:
                continue
            out[f.alias] = ("true" if v else "false") if isinstance(v, bool) else \
                str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        return out


class CommitTimings(EnvSettings):
    """The commit wait every lake writer (transform, compact, erasure) forces, settable per stack
    (`etl:commitBusyWaitSeconds`): how long an op waits at a partition another op holds before it gives
    up and its message is retried (contracts/commits: CommitSettings.busy_wait_seconds)."""

    commit_busy_wait_s: float = Field(20, gt=0, le=300, alias="COMMIT_BUSY_WAIT_SECONDS")


class ErasureTunables(CommitTimings):
    """The erasure stack's `etl:erasure*` knobs as its functions see them (docs/deploy.md lists the keys)."""

    deadline_days: float = Field(30, alias="ERASURE_DEADLINE_DAYS")
    #: an open request is "at risk" (metric + alarm) this long before its deadline
    risk_days: float = Field(7, alias="ERASURE_RISK_DAYS")
    #: replaced lake generations stay readable this long after an erasure commit (running queries),
    #: then the run deletes every version of them; far below the deadline, above Athena's query timeout
    purge_grace_s: float = Field(1800, alias="ERASURE_PURGE_GRACE_SECONDS")
    #: a run starts at once when this many requests are pending …
    batch_size: int = Field(100, alias="ERASURE_BATCH_SIZE")
    #: … or when the oldest pending request has waited this long (one run rewrites a file once)
    batch_max_wait_s: float = Field(3600, alias="ERASURE_BATCH_MAX_WAIT_SECONDS")
    max_attempts: int = Field(3, alias="ERASURE_MAX_ATTEMPTS")
    #: raw copies larger than this (decompressed) are deleted instead of rewritten line by line
    raw_rewrite_max_bytes: int = Field(1024**3, alias="ERASURE_RAW_REWRITE_MAX_BYTES")
    record_retention_days: float = Field(730, alias="ERASURE_RECORD_RETENTION_DAYS")
    kms_key_id: str = Field("", alias="ERASURE_KMS_KEY_ID")
    #: four-eyes: a new request waits until someone other than its filer approves it (etl:erasureApproval)
    approval_required: bool = Field(False, alias="ERASURE_APPROVAL")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.risk_days >= self.deadline_days:
            raise ValueError("etl:erasureRiskDays must be shorter than etl:erasureDeadlineDays")
        if self.purge_grace_s >= self.deadline_days * DAY / 2:
            raise ValueError("etl:erasurePurgeGraceSeconds must stay far below the erasure deadline")
        return self

    @property
    def deadline_s(self) -> float:
        return self.deadline_days * DAY


class ErasureSettings(ErasureTunables):
    """Everything an erasure function reads: the tunables plus where its resources are."""

    env: str = Field("local", alias="ETL_ENV")
    bus: str = Field(alias="BUS_NAME")
    lake_bucket: str = Field(alias="LAKE_BUCKET")
    raw_bucket: str = Field(alias="RAW_BUCKET")
    quarantine_bucket: str = Field(alias="QUARANTINE_BUCKET")
    landing_bucket: str = Field("", alias="LANDING_BUCKET")
    erasure_bucket: str = Field(alias="ERASURE_BUCKET")
    state_table: str = Field(alias="STATE_TABLE")
    database: str = Field(alias="GLUE_DATABASE")
    alerts_topic: str = Field("", alias="ALERTS_TOPIC_ARN")
    #: requests and runs (hashes only) and the vault (clear ids, never backed up): tables of their own, so
    #: no other service can reach them; empty = the state table (tests that need only one table; the program
    #: always sets both, tests/infra/test_least_privilege.py checks it)
    erasure_table: str = Field("", alias="ERASURE_TABLE")
    vault_table: str = Field("", alias="VAULT_TABLE")
    run_queue_url: str = Field("", alias="RUN_QUEUE_URL")
    work_queue_url: str = Field("", alias="WORK_QUEUE_URL")
    max_receive_count: int = Field(3, alias="MAX_RECEIVE_COUNT")
    salt_parameter: str = Field("", alias="ERASURE_SALT_PARAMETER")

    @property
    def records_table(self) -> str:
        return self.erasure_table or self.state_table

    @property
    def vault(self) -> str:
        return self.vault_table or self.records_table


class LakeWriterResources(CommitTimings):
    """Where a function that commits lake partitions through the bus (transform, compact) finds them."""

    env: str = Field("local", alias="ETL_ENV")
    bus: str = Field(alias="BUS_NAME")
    lake: str = Field(alias="LAKE_BUCKET")
    state_table: str = Field(alias="STATE_TABLE")
    database: str = Field(alias="GLUE_DATABASE")
    max_receive_count: int = Field(3, alias="MAX_RECEIVE_COUNT")


class TransformSettings(LakeWriterResources):
    """What the transform function reads (infra/transform.py writes it)."""

    quarantine: str = Field(alias="QUARANTINE_BUCKET")
    #: objects larger than this are split into chunks transformed in parallel (etl:chunkMb)
    chunk_bytes: int = Field(128 * 1024 * 1024, alias="CHUNK_BYTES")


class CompactTunables(CommitTimings):
    """The `etl:compact*` knobs the compact function reads (infra/compact.py: CompactConfig)."""

    #: staged files and replaced generations are kept this long (a reader mid-query, a writer mid-commit)
    grace_seconds: float = Field(4 * 3600, alias="GRACE_SECONDS")
    #: the function's timeout: an op older than this is abandoned
    max_op_seconds: float = Field(900, alias="MAX_OP_SECONDS")
    clock_margin_seconds: float = Field(30, alias="CLOCK_MARGIN_SECONDS")
    #: a partition idle this long is swept if it has more than one small file
    quiet_seconds: float = Field(900, alias="QUIET_SECONDS")
    #: overrides every contract's compaction_min_files; unset: each contract's
    min_files: int | None = Field(None, alias="MIN_FILES")


class CompactSettings(CompactTunables, LakeWriterResources):
    """What the compact function reads: its tunables and its resources."""

    #: its own queue (the sweep sends commands to it)
    queue_name: str = Field(alias="QUEUE_NAME")
    work_dir: str = Field("/tmp", alias="WORK_DIR")
    #: rewrite threads; unset: the machine's CPUs
    threads: int | None = Field(None, alias="THREADS")


class IngestSettings(EnvSettings):
    """What the ingest function reads (infra/ingest.py writes it)."""

    env: str = Field("local", alias="ETL_ENV")
    bus: str = Field(alias="BUS_NAME")
    raw_bucket: str = Field(alias="RAW_BUCKET")
    state_table: str = Field(alias="STATE_TABLE")
    #: on the last attempt the status record says why (contracts/failures.py)
    max_receive_count: int = Field(3, alias="MAX_RECEIVE_COUNT")

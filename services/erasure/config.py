"""The erasure functions' settings, from their environment (infra/erasure.py sets every variable)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class Config:
    env: str
    bus: str
    lake_bucket: str
    raw_bucket: str
    quarantine_bucket: str
    landing_bucket: str
    erasure_bucket: str
    state_table: str
    database: str
    alerts_topic: str = ""
    #: requests and runs (hashes only) and the vault (clear ids, never backed up): tables of their own, so
    #: no other service can reach them; empty = the state table (tests that need only one table; the program
    #: always sets both, tests/infra/test_least_privilege.py checks it)
    erasure_table: str = ""
    vault_table: str = ""
    run_queue_url: str = ""
    work_queue_url: str = ""
    deadline_days: float = 30
    #: an open request is "at risk" (metric + alarm) this long before its deadline
    risk_days: float = 7
    #: replaced lake generations stay readable this long after an erasure commit (running queries),
    #: then the run deletes every version of them; far below the deadline, above Athena's query timeout
    purge_grace_s: float = 1800
    #: a run starts at once when this many requests are pending …
    batch_size: int = 100
    #: … or when the oldest pending request has waited this long (one run rewrites a file once)
    batch_max_wait_s: float = 3600
    max_attempts: int = 3
    #: raw copies larger than this (decompressed) are deleted instead of rewritten line by line
    raw_rewrite_max_bytes: int = 1024**3
    record_retention_days: float = 730
    max_receive_count: int = 3
    kms_key_id: str = ""
    salt_parameter: str = ""
    #: four-eyes: a new request waits until someone other than its filer approves it (etl:erasureApproval)
    approval_required: bool = False

    @property
    def records_table(self) -> str:
        return self.erasure_table or self.state_table

    @property
    def vault(self) -> str:
        return self.vault_table or self.records_table

    @property
    def deadline_s(self) -> float:
        return self.deadline_days * DAY

    @classmethod
    def from_environ(cls) -> Config:
        e = os.environ

        def num(name: str, default: float) -> float:
            return float(e.get(name) or default)

        return cls(
            env=e.get("ETL_ENV", "local"),
            bus=e["BUS_NAME"],
            lake_bucket=e["LAKE_BUCKET"],
            raw_bucket=e["RAW_BUCKET"],
            quarantine_bucket=e["QUARANTINE_BUCKET"],
            landing_bucket=e.get("LANDING_BUCKET", ""),
            erasure_bucket=e["ERASURE_BUCKET"],
            state_table=e["STATE_TABLE"],
            erasure_table=e.get("ERASURE_TABLE", ""),
            vault_table=e.get("VAULT_TABLE", ""),
            database=e["GLUE_DATABASE"],
            alerts_topic=e.get("ALERTS_TOPIC_ARN", ""),
            run_queue_url=e.get("RUN_QUEUE_URL", ""),
            work_queue_url=e.get("WORK_QUEUE_URL", ""),
            deadline_days=num("ERASURE_DEADLINE_DAYS", 30),
            risk_days=num("ERASURE_RISK_DAYS", 7),
            purge_grace_s=num("ERASURE_PURGE_GRACE_SECONDS", 1800),
            batch_size=int(num("ERASURE_BATCH_SIZE", 100)),
            batch_max_wait_s=num("ERASURE_BATCH_MAX_WAIT_SECONDS", 3600),
            max_attempts=int(num("ERASURE_MAX_ATTEMPTS", 3)),
            raw_rewrite_max_bytes=int(num("ERASURE_RAW_REWRITE_MAX_BYTES", 1024**3)),
            record_retention_days=num("ERASURE_RECORD_RETENTION_DAYS", 730),
            max_receive_count=int(num("MAX_RECEIVE_COUNT", 3)),
            kms_key_id=e.get("ERASURE_KMS_KEY_ID", ""),
            salt_parameter=e.get("ERASURE_SALT_PARAMETER", ""),
            approval_required=e.get("ERASURE_APPROVAL", "false").lower() == "true",
        )

"""Typed stack configuration with documented defaults (namespace `etl:` in Pulumi.<stack>.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from contracts import naming
from contracts.settings import CommitTimings, TransformSettings


@dataclass(frozen=True)
class Settings:
    component: str
    env: str
    raw_ttl_days: int = 30
    landing_ttl_days: int = 7
    noncurrent_version_days: int = 3
    archive_retention_days: int = 30
    log_retention_days: int = 30
    lambda_architecture: str = "arm64"
    lambda_runtime: str = "python3.12"
    lambda_layers: tuple[str, ...] = ()
    max_concurrency: int = 10
    max_receive_count: int = 3
    chunk_bytes: int = TransformSettings.model_fields["chunk_bytes"].default
    #: every lake writer's wait at a partition another op holds (etl:commitBusyWaitSeconds)
    commit_busy_wait_s: float = CommitTimings.model_fields["commit_busy_wait_s"].default
    query_results_days: int = 7
    athena_bytes_cutoff: int = 10 * 1024**3
    alert_email: str | None = None
    core_stack: str | None = None
    dashboard: bool = True  # the env's CloudWatch dashboard in core ($3/month beyond an account's first three)

    @property
    def core_stack_name(self) -> str:
        """StackReference name of core: config `etl:coreStack`, else `<org>/<project>/core-<env>`."""
        if self.core_stack:
            return self.core_stack
        return f"{pulumi.get_organization()}/{pulumi.get_project()}/{naming.stack_name('core', self.env)}"


def load() -> Settings:
    """Read config; the component and env come from the stack name unless set explicitly."""
    cfg = pulumi.Config("etl")
    component, env = cfg.get("component"), cfg.get("env")
    if not (component and env):
        component, env = naming.parse_stack_name(pulumi.get_stack())
    if component not in naming.COMPONENTS:
        raise ValueError(f"etl:component {component!r} is not one of {', '.join(naming.COMPONENTS)}")
    arch = cfg.get("lambdaArchitecture") or "arm64"
    if arch not in ("arm64", "x86_64"):
        raise ValueError(f"etl:lambdaArchitecture must be arm64 or x86_64, not {arch!r}")
    dashboard = cfg.get_bool("dashboard")
    return Settings(
        component=component,
        env=env,
        raw_ttl_days=cfg.get_int("rawTtlDays") or 30,
        landing_ttl_days=cfg.get_int("landingTtlDays") or 7,
        noncurrent_version_days=cfg.get_int("noncurrentVersionDays") or 3,
        archive_retention_days=cfg.get_int("archiveRetentionDays") or 30,
        log_retention_days=cfg.get_int("logRetentionDays") or 30,
        lambda_architecture=arch,
        lambda_layers=tuple(cfg.get_object("lambdaLayers") or ()),
        max_concurrency=max(2, cfg.get_int("maxConcurrency") or 10),
        max_receive_count=cfg.get_int("maxReceiveCount") or 3,
        chunk_bytes=cfg.get_int("chunkBytes") or (cfg.get_int("chunkMb") or 0) * 1024 * 1024 or Settings.chunk_bytes,
        commit_busy_wait_s=cfg.get_float("commitBusyWaitSeconds") or Settings.commit_busy_wait_s,
        query_results_days=cfg.get_int("queryResultsDays") or 7,
        athena_bytes_cutoff=cfg.get_int("athenaBytesScannedCutoff") or 10 * 1024**3,
        alert_email=cfg.get("alertEmail"),
        core_stack=cfg.get("coreStack"),
        dashboard=True if dashboard is None else dashboard,
    )

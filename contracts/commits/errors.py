"""Errors of partition commits: what callers catch (CommitError and its kinds) and backend signals.

Callers retry `PartitionBusy` and `DeadlineExceeded`, re-plan on `ReplaceConflict`, and treat the
others as bugs or manual repairs. `ConditionFailed` and `ObjectNotFound` are how backends tell the
committer about a lost condition or a missing copy source; they never reach callers.
"""

from __future__ import annotations

from botocore.exceptions import ClientError


class CommitError(RuntimeError):
    """A commit cannot proceed; the message names the partition and the reason."""


class ReplaceConflict(CommitError):
    """Files to replace are no longer current (another replace won): re-plan with a new op id."""


class PartitionBusy(CommitError):
    """Another attempt holds the partition's claim; retrying later is safe."""


class DeadlineExceeded(CommitError):
    """The attempt reached its deadline and stopped before its next request; a retry completes it."""


class OpIdReused(CommitError):
    """The op id was already used with different arguments; op ids must name one operation."""


class MissingObject(CommitError):
    """A file a pending commit needs is gone (staged file purged or deleted outside commits)."""


class CatalogMismatch(CommitError):
    """The Glue partition points somewhere commits did not put it; fix it by hand, never silently."""


class ConditionFailed(Exception):
    """Backend signal: a conditional state-table write found another version."""


class ObjectNotFound(Exception):
    """Backend signal: the source of a copy does not exist."""


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore error ('' if absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))

"""Commands on the compaction queue besides platform events: sent by the schedule, by a compaction
that ran out of time, and by `etl compact` (through the queue, so retries and the DLQ apply).

    {"command": "compact", "dataset": "orders", "partition": {"order_year": "2024", ...}, "reason": "manual"}
    {"command": "cleanup"}
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.compact.plan import Trigger


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompactPartition(_Command):
    """Compact one partition now: any two small files, no threshold."""

    command: Literal["compact"] = "compact"
    dataset: str
    partition: dict[str, str]
    reason: Literal[Trigger.SWEEP, Trigger.MANUAL, Trigger.CONTINUE] = Trigger.MANUAL


class Cleanup(_Command):
    """Delete what is past its grace period now (never earlier: `now` is the function's clock)."""

    command: Literal["cleanup"] = "cleanup"


Command = Annotated[CompactPartition | Cleanup, Field(discriminator="command")]
_ADAPTER: TypeAdapter[CompactPartition | Cleanup] = TypeAdapter(Command)


def is_command(body: dict[str, Any]) -> bool:
    return "command" in body


def parse_command(body: dict[str, Any]) -> CompactPartition | Cleanup:
    """Validate a command; raises (and the message retries, then dead-letters) if it is malformed."""
    return _ADAPTER.validate_python(body)


def message(cmd: CompactPartition | Cleanup) -> str:
    return json.dumps(cmd.model_dump(mode="json"), sort_keys=True)

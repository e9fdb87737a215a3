"""Test doubles of the compact handler's tests: a compactor that records its calls, SQS records, bus envelopes.

Shared by the handler and the observability tests.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from contracts import events
from contracts.commits import CleanupReport, PartitionRef
from services.compact.commands import CompactPartition
from services.compact.jobs import Outcome
from services.compact.plan import Trigger


@dataclass
class FakeCompactor:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def files_added(self, detail: events.PartitionFilesAdded, deadline: float) -> Outcome:
        self.calls.append(("files_added", detail.object_id))
        return Outcome(detail.dataset, detail.partition, "below-threshold")

    def compact(self, ref: PartitionRef, trigger: Trigger, deadline: float) -> Outcome:
        self.calls.append(("compact", (ref.dataset, dict(ref.values), trigger)))
        return Outcome(ref.dataset, dict(ref.values), "compacted")

    def sweep(self) -> list[CompactPartition]:
        self.calls.append(("sweep", None))
        return []

    def cleanup(self, deadline: float) -> CleanupReport:
        self.calls.append(("cleanup", None))
        return CleanupReport(entries=1, objects_deleted=3)



def record(body: str) -> dict[str, Any]:
    return {"messageId": uuid.uuid4().hex, "receiptHandle": "r", "body": body, "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn",
            "awsRegion": "x"}


def envelope(detail: events.EventDetail) -> str:
    return json.dumps({"id": uuid.uuid4().hex, "source": detail.SOURCE, "detail-type": detail.DETAIL_TYPE,
                       "detail": detail.model_dump(mode="json")})

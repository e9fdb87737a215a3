"""Per-dataset metrics (CloudWatch EMF): the names services emit and the dashboard reads.

A batch can mix datasets, so the `dataset` dimension never goes on a handler's shared `Metrics()`
(whose dimensions apply to every metric of the invocation): each processed record flushes its own
blob through `EphemeralMetrics`, with the handler's namespace and service. The dimension value is
a contract name or `unknown` — never a key, a subject id or a row value — which also bounds how many
custom metrics (each billed while it receives data) a deployment can create.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics

from contracts.datasets import load_datasets

#: POWERTOOLS_METRICS_NAMESPACE of every function; the dashboard's SEARCH expressions read it
NAMESPACE = "etl"
#: the dimension beside `service` on every per-dataset metric
DATASET = "dataset"
#: dimension value of an object that matched no contract (the name it claimed is not a metric value)
UNKNOWN_DATASET = "unknown"

# ingest
OBJECTS_INGESTED = "ObjectsIngested"
OBJECTS_REJECTED = "ObjectsRejected"
BYTES_INGESTED = "BytesIngested"
INGEST_LATENCY = "IngestLatencyMs"
# transform
ROWS_GOOD = "RowsGood"
ROWS_QUARANTINED = "RowsQuarantined"
BYTES_IN = "BytesIn"
FILES_WRITTEN = "FilesWritten"
CHUNK_LATENCY = "ChunkLatencyMs"
# compact
FILES_BEFORE = "FilesBefore"
FILES_AFTER = "FilesAfter"
BYTES_COMPACTED = "BytesCompacted"
COMPACTION_LATENCY = "CompactionLatencyMs"
# erasure
ROWS_REMOVED = "ErasureRowsRemoved"
FILES_REWRITTEN = "ErasureFilesRewritten"
REQUESTS_AT_RISK = "ErasureRequestsAtRisk"  # service-level (erasure-run), not per dataset


def dataset_dimension(dataset: str | None) -> str:
    """The contract's name, or `unknown` for anything that is not one."""
    return dataset if dataset and dataset in load_datasets() else UNKNOWN_DATASET


@contextmanager
def for_dataset(shared: Metrics, dataset: str | None) -> Iterator[EphemeralMetrics]:
    """Metrics of one record, flushed as one EMF blob with dimensions service + dataset when the block ends.

    Nothing is flushed if the block raises (the record is retried) or adds no metric.
    """
    m = EphemeralMetrics(namespace=shared.namespace, service=shared.service)
    m.add_dimension(name=DATASET, value=dataset_dimension(dataset))
    yield m
    if m.metric_set:
        m.flush_metrics()

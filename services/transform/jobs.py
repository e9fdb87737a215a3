"""What one transform invocation does on AWS: plan chunks of a big object, or transform one chunk.

The pure work (parse, validate, partition, Parquet) lives in `core`; this module reads the raw
object, commits partition files through the partition-commit protocol, writes quarantine Parquet,
records progress and publishes events. Every step is safe to repeat: names and op ids derive from
(object, chunk, partition), so a retry replays instead of duplicating.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow.parquet as pq

from contracts import aws, events, layout, progress
from contracts.commits import Append, FileToStage, PartitionCommitter, PartitionRef
from contracts.datasets import Dataset, get_dataset
from services.transform import fanin
from services.transform.chunks import ByteRange, can_split, dialect_of, plan_chunks
from services.transform.config import Env
from services.transform.core import TransformResult, transform
from services.transform.errors import TransformError
from services.transform.parquet import file_name, parquet_bytes
from services.transform.partition import partition_path

COMMIT_THREADS = 8




def dataset_of(name: str, object_id: str) -> Dataset:
    ds = get_dataset(name)
    if ds is None:
        raise TransformError(object_id, f"dataset {name!r} has no contract in this deployment")
    return ds


def _raw_file(bucket: str, key: str, object_id: str) -> Any:
    """A seekable file over the raw object: ranged GETs, so a chunk reads only its bytes.

    A raw copy that no longer exists (erased, expired) can never be read: a permanent failure.
    """
    try:
        return aws.s3_filesystem().open_input_file(f"{bucket}/{key}")
    except FileNotFoundError as exc:
        raise TransformError(object_id, f"raw copy s3://{bucket}/{key} no longer exists "
                                        "(erased or expired?): land the file again to transform it") from exc


def plan(detail: events.RawObjectStored, env: Env) -> list[events.ChunkPlanned]:
    """Chunks of an object: one whole range unless it is big; cuts fall on record boundaries."""
    ds = dataset_of(detail.dataset, detail.object_id)
    if detail.size <= env.chunk_bytes or not can_split(ds):
        return [_chunk_event(detail, ByteRange(0, detail.size), 1)]
    with _raw_file(detail.raw_bucket, detail.raw_key, detail.object_id) as f:
        ranges = plan_chunks(detail.size, env.chunk_bytes, lambda a, b: f.read_at(b - a, a), dialect_of(ds))
    return [_chunk_event(detail, r, len(ranges)) for r in ranges]


def _chunk_event(d: events.RawObjectStored, r: ByteRange, count: int) -> events.ChunkPlanned:
    return events.ChunkPlanned(dataset=d.dataset, object_id=d.object_id, raw_bucket=d.raw_bucket, raw_key=d.raw_key,
                               chunk_index=r.index, chunk_count=count, start=r.start, end=r.end,
                               first_line=r.first_line)


def transform_chunk(
    job: events.ChunkPlanned, env: Env, committer: PartitionCommitter, deadline: float | None = None
) -> dict[str, Any]:
    """Transform one chunk, commit its partitions, quarantine its bad rows, fan in, announce."""
    ds = dataset_of(job.dataset, job.object_id)
    whole = job.chunk_count == 1
    chunk = None if whole else ByteRange(job.start, job.end, job.chunk_index, job.first_line)
    # each partition's file is encoded as soon as transform() has it sorted, while it gathers the next
    with ThreadPoolExecutor(max_workers=COMMIT_THREADS) as pool, \
            _raw_file(job.raw_bucket, job.raw_key, job.object_id) as f:
        encoded: list[Future[bytes]] = []
        result = transform(ds, f, object_id=job.object_id, source=f"s3://{job.raw_bucket}/{job.raw_key}", chunk=chunk,
                           ready=lambda part: encoded.append(pool.submit(parquet_bytes, part.table, ds)))
        data = [e.result() for e in encoded]
    added = commit_partitions(result, ds, committer, deadline, data)
    if result.rows_quarantined:
        write_quarantine(result, env)
    published: list[events.EventDetail] = list(added)
    counts = {"rows_in": result.rows_in, "rows_good": result.rows_good,
              "rows_quarantined": result.rows_quarantined, "partitions": len(result.partitions)}
    ddb = aws.client("dynamodb")
    totals = fanin.record_chunk(ddb, env.state_table, job.object_id, job.chunk_index, job.chunk_count, counts)
    if totals is not None:
        published.append(events.ObjectTransformed(
            dataset=job.dataset, object_id=job.object_id, raw_key=job.raw_key, chunks=totals.chunks,
            rows_in=totals.rows_in, rows_good=totals.rows_good, rows_quarantined=totals.rows_quarantined,
            partitions=totals.partitions))
    events.publish(aws.client("events"), env.bus, published)
    if totals is not None:
        fanin.mark_announced(ddb, env.state_table, job.object_id)
        progress.record(ddb, env.state_table, job.object_id, "transformed", rows_in=totals.rows_in,
                        rows_good=totals.rows_good, rows_quarantined=totals.rows_quarantined,
                        partitions=totals.partitions)
    return {**counts, "object_id": job.object_id, "chunk": job.chunk_index, "complete": totals is not None}


def commit_partitions(
    result: TransformResult, ds: Dataset, committer: PartitionCommitter, deadline: float | None = None,
    encoded: list[bytes] | None = None,
) -> list[events.PartitionFilesAdded]:
    """Every partition the chunk touches, committed in one batched step (`append_many`): one file and
    one append each, their requests shared (contracts/commits). The op id makes a retried chunk a
    replay, not a second copy. An error in any partition raises after the others finish: the retry
    replays those that committed.

    `deadline` (epoch seconds, the invocation's end) keeps a killed attempt from holding the partition.
    `encoded` holds the partitions' Parquet files when they were encoded already (`parquet_bytes`).
    """
    if not result.partitions:
        return []
    parts = [(dict(p.values), p) for p in result.partitions]
    op_ids = [f"transform:{result.object_id}:{result.chunk_index}:{partition_path(v)}" for v, _ in parts]
    refs = [PartitionRef(ds.name, v) for v, _ in parts]
    if encoded is not None:
        data = encoded
    else:
        with ThreadPoolExecutor(max_workers=min(COMMIT_THREADS, len(parts))) as pool:
            data = list(pool.map(lambda part: parquet_bytes(part.table, ds), (p for _, p in parts)))
    if len(data) != len(parts):
        raise RuntimeError(f"object {result.object_id}: {len(parts)} partitions but {len(data)} files")
    staged = committer.stage_many(
        [FileToStage(ref, op_id, file_name(result.object_id, result.chunk_index, v), d, p.table.num_rows)
         for ref, op_id, (v, p), d in zip(refs, op_ids, parts, data, strict=True)],
        workers=COMMIT_THREADS,
    )
    appends = [Append(ref, (f,), op_id) for ref, f, op_id in zip(refs, staged, op_ids, strict=True)]
    results = committer.append_many(appends, deadline=deadline, workers=COMMIT_THREADS)
    return [events.PartitionFilesAdded(dataset=ds.name, partition=v, generation=res.generation,
                                       files=list(res.added), rows=p.table.num_rows, bytes=len(d),
                                       object_id=result.object_id)
            for (v, p), d, res in zip(parts, data, results, strict=True)]


def write_quarantine(result: TransformResult, env: Env) -> str:
    key = layout.quarantine_key(result.dataset, result.object_id, result.chunk_index)
    with aws.s3_filesystem().open_output_stream(f"{env.quarantine}/{key}") as out:
        pq.write_table(result.quarantine, out, compression="zstd")
    return key

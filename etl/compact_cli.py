"""`etl compact DATASET [--partition k=v …]` and `etl compact-cleanup`: trigger compaction by hand.

Both go through the platform, not around it: they put commands on the compaction service's own
queue (retries, DLQ, the lease and the commit protocol all apply), so a manual run is exactly what
the schedule does. `--partition` values select partitions; a partial selection (e.g. only the
year) compacts every matching partition registered in the Glue catalog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, NoReturn

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.markup import escape

from contracts import aws
from contracts.datasets import Dataset, get_dataset
from etl import targets

app = typer.Typer(help=__doc__)
console = Console()
err = Console(stderr=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="`local` or a deployed env (dev, prod…).")]
PartitionOpt = Annotated[
    list[str] | None,
    typer.Option("--partition", "-p", help="k=v (repeat for each key); partial selections match several."),
]


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def parse_selection(dataset: Dataset, pairs: Sequence[str]) -> dict[str, str]:
    """`["order_year=2024", …]` → {"order_year": "2024"}, checked against the partition keys."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--partition {pair!r} is not k=v")
        if key not in dataset.partition_names:
            keys = ", ".join(dataset.partition_names)
            raise ValueError(f"{dataset.name} has no partition key {key!r} (keys: {keys})")
        if key in out and out[key] != value:
            raise ValueError(f"--partition {key} given twice with different values")
        out[key] = value
    return out


def compact_message(dataset: str, partition: dict[str, str]) -> str:
    """A `compact` command as services/compact/commands.py reads it (tests keep the two in step)."""
    return json.dumps({"command": "compact", "dataset": dataset, "partition": partition, "reason": "manual"},
                      sort_keys=True)


CLEANUP_MESSAGE = json.dumps({"command": "cleanup"})


def registered_partitions(glue: Any, database: str, dataset: Dataset) -> Iterator[dict[str, str]]:
    """Every partition of the dataset's table in the catalog (the platform registers them on commit)."""
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=dataset.name)
    for page in pages:
        for p in page["Partitions"]:
            yield dict(zip(dataset.partition_names, p["Values"], strict=True))


def send(sqs: Any, queue_url: str, bodies: Sequence[str]) -> int:
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[i : i + 10])]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        if failed:
            raise RuntimeError(f"{len(failed)} commands were refused by the queue: {failed[:3]}")
    return len(bodies)


@app.command("compact")
def compact(
    dataset: Annotated[str, typer.Argument(help="Dataset name (contract), e.g. orders.")],
    partition: PartitionOpt = None,
    env: EnvOpt = "local",
) -> None:
    """Compact a dataset's partitions now (any two small files; no threshold), through the service's queue."""
    ds = get_dataset(dataset)
    if ds is None:
        _fail(f"no dataset contract named {dataset!r}")
    if not ds.partitioning:
        _fail(f"{dataset} is not partitioned: compaction works on partitions")
    try:
        selection = parse_selection(ds, partition or [])
        target = targets.resolve(env)
        queue_url = target.out("compact", "queueUrl")
        if len(selection) == len(ds.partition_names):
            chosen = [selection]
        else:
            glue = aws.client("glue")
            found = registered_partitions(glue, target.out("core", "glueDatabase"), ds)
            chosen = [p for p in found if all(p[k] == v for k, v in selection.items())]
        if not chosen:
            _fail(f"no registered partition of {dataset} matches {selection or 'anything'}")
        sent = send(aws.client("sqs"), queue_url, [compact_message(ds.name, p) for p in chosen])
    except (ValueError, RuntimeError, ClientError, targets.TargetError) as exc:
        _fail(str(exc))
    console.print(f"queued compaction of {sent} partition(s) of [bold]{dataset}[/] in {env}; "
                  "each becomes PartitionCompacted on the bus when committed")


@app.command("compact-cleanup")
def compact_cleanup(env: EnvOpt = "local") -> None:
    """Delete replaced files (and their old versions) that are past their grace period, now."""
    try:
        target = targets.resolve(env)
        send(aws.client("sqs"), target.out("compact", "queueUrl"), [CLEANUP_MESSAGE])
    except (RuntimeError, ClientError, targets.TargetError) as exc:
        _fail(str(exc))
    console.print(f"queued a cleanup in {env} (it never deletes anything younger than the grace period)")


if __name__ == "__main__":
    app()

"""`etl dlq list|show|redrive`: inspect dead letters and send them back to be processed again."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Annotated, Any, NoReturn

import typer
from botocore.exceptions import ClientError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from contracts import aws
from etl import dlq, targets

app = typer.Typer(help=__doc__, no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="`local` or a deployed env (dev, prod…).")]
QueueArg = Annotated[str, typer.Argument(help="The DLQ: full name (etl-dev-ingest-dlq), short name (ingest) or URL.")]


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _queues(env: str) -> tuple[Any, list[dlq.DeadLetterQueue]]:
    """The env's DLQs: from the local platform's state file, or list_queues on AWS."""
    sqs = None
    try:
        if env == "local":
            st = targets.local_state()
            os.environ.update(st.client_env())
            sqs = aws.client("sqs")
            urls = [r["id"] for s in st.stacks.values() for r in s.resources if r["type"] == "aws:sqs/queue:Queue"]
        else:
            sqs = aws.client("sqs")
            urls = dlq.queue_urls(sqs, env)
        return sqs, dlq.describe(sqs, urls)
    except (targets.TargetError, ClientError) as exc:
        _fail(str(exc))


@app.command("list")
def list_cmd(env: EnvOpt = "local") -> None:
    """Every dead-letter queue of the env with its depth and the queue(s) that feed it."""
    _, found = _queues(env)
    table = Table(title=f"dead-letter queues of {env}")
    for col in ("queue", "messages", "in flight", "source queue"):
        table.add_column(col, justify="right" if col in ("messages", "in flight") else "left")
    for d in found:
        depth = f"[red]{d.depth}[/]" if d.depth else "0"
        table.add_row(d.name, depth, str(d.in_flight), ", ".join(d.sources) or "-")
    console.print(table if found else f"no dead-letter queues in {env}")


@app.command("show")
def show_cmd(
    queue: QueueArg,
    env: EnvOpt = "local",
    limit: Annotated[int, typer.Option("--max", "-n", help="At most this many messages.")] = 10,
    raw: Annotated[bool, typer.Option("--raw", help="Print bodies as they are (no JSON pretty-printing).")] = False,
) -> None:
    """Print messages without deleting them (each is made visible again right away)."""
    sqs, found = _queues(env)
    try:
        target = dlq.resolve(found, env, queue)
    except dlq.DlqError as exc:
        _fail(str(exc))
    messages = dlq.peek(sqs, target.url, limit)
    console.print(f"{target.name}: {target.depth} message(s), showing {len(messages)}")
    for m in messages:
        sent = dt.datetime.fromtimestamp(m.sent_at, dt.UTC).isoformat(timespec="seconds") if m.sent_at else "?"
        console.rule(f"{m.message_id} · sent {sent} · received {m.receive_count} time(s) · {escape(m.summary())}")
        console.print(escape(m.body if raw else _pretty(m.body)), soft_wrap=True)


def _pretty(body: str) -> str:
    """JSON bodies indented; anything else as it is."""
    try:
        return json.dumps(json.loads(body), indent=2)
    except ValueError:
        return body


@app.command("redrive")
def redrive_cmd(
    queue: QueueArg,
    env: EnvOpt = "local",
    to: Annotated[str | None, typer.Option("--to", help="Destination queue name (default: the DLQ's source).")]
    = None,
    method: Annotated[str, typer.Option(help="auto | move-task (SQS server side) | manual (one at a time).")]
    = "auto",
) -> None:
    """Move the DLQ's messages back to the queue they came from, with a progress bar; none is lost."""
    if method not in ("auto", "move-task", "manual"):
        _fail(f"--method must be auto, move-task or manual, not {method!r}")
    sqs, found = _queues(env)
    try:
        target = dlq.resolve(found, env, queue)
        dest = sqs.get_queue_url(QueueName=to)["QueueUrl"] if to else None
        if env == "local" and method == "auto":
            method = "manual"  # the emulator has no message move tasks
        with Progress(TextColumn("redriving {task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console) as bar:
            task = bar.add_task(target.name, total=target.depth or None)
            result = dlq.redrive(sqs, target, dest, method=method,  # type: ignore[arg-type]
                                 on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (dlq.DlqError, ClientError) as exc:
        _fail(str(exc))
    console.print(f"[green]moved {result.moved} message(s)[/] from {target.name} to {result.destination} "
                  f"({result.method})")

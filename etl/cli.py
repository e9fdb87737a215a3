"""`etl` — the platform's command line: local platform, loading, status, datasets, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table

from contracts import aws, progress, schema_evolution
from contracts.datasets import DATASETS_DIR, ContractError, load_dataset_file, load_datasets
from etl import build_cli, catalog_sync, compact_cli, deploy_cli, dlq_cli, erasure_cli, loader, query_cli, targets
from etl.local import accounting, emulator, platform

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
local_app = typer.Typer(help="Run the whole platform on this machine (moto server + the Pulumi program).",
                        no_args_is_help=True)
datasets_app = typer.Typer(help="Dataset contracts: list, validate, diff, lock versions, apply to an env.",
                           no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(datasets_app, name="datasets")
app.add_typer(deploy_cli.app)  # etl deploy | preview | destroy | init ENV
app.add_typer(build_cli.app)  # etl build [SERVICE]
app.add_typer(query_cli.app)  # etl query "SQL"
app.add_typer(dlq_cli.app, name="dlq")  # etl dlq list | show | redrive QUEUE
app.add_typer(compact_cli.app)  # etl compact DATASET [-p k=v …] | etl compact-cleanup
app.add_typer(erasure_cli.app, name="erasure")  # etl erasure request | run | status | list | cancel | certificate
console = Console()
err = Console(stderr=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: `local` or a deployed env (dev, prod…).")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# -- local platform -------------------------------------------------------------------------------
@local_app.command("up")
def local_up(
    port: Annotated[int, typer.Option(help="Loopback port of the emulator (0 = any free port).")] = 4566,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; stop with `etl local down`.")]
    = False,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="Config over Pulumi.<stack>.yaml: component:key=value (e.g. transform:chunkBytes=1048576)."
    )] = None,
    request_log: Annotated[Path | None, typer.Option(
        help="Append one JSON line per AWS request (caller, service, operation, bytes) to this file."
    )] = None,
) -> None:
    """Start moto server on loopback and stand up every stack of the `local` env from the Pulumi program."""
    existing = platform.PlatformState.load()
    if existing and platform.pid_alive(existing.pid):
        fail(f"already running at {existing.endpoint} (pid {existing.pid}); `etl local down` stops it")
    if existing and (left := platform.stop_recorded(existing)):
        err.print(f"[yellow]stopped {len(left)} process(es) left by a platform that crashed[/]")
    try:
        emulator.check_port("127.0.0.1", port)
    except emulator.EmulatorError as exc:
        fail(str(exc))
    try:
        os.environ[platform.CONFIG_ENV] = json.dumps(platform.config_overrides(settings or []))
    except ValueError as exc:
        fail(str(exc))
    if request_log is not None:
        os.environ[accounting.REQUEST_LOG_ENV] = str(request_log.resolve())
    platform.state_file().unlink(missing_ok=True)
    if not detach:
        console.print("starting the local platform (Ctrl-C stops it)…")
        try:
            platform.serve(port)
        except emulator.EmulatorError as exc:
            fail(str(exc))
        return
    log = platform.state_dir() / "platform.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl.local.platform", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=platform.ROOT,
        )
    with console.status("provisioning the local env from the Pulumi program…"):
        try:
            st = platform.wait_ready(proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            if proc.poll() is None:  # timed out: do not leave a half-started platform behind
                stale = platform.PlatformState.load()
                if stale is not None:
                    platform.stop_recorded(stale)
                proc.terminate()
            fail(str(exc))
    _print_ready(st)


def _print_ready(st: platform.PlatformState) -> None:
    console.print(f"[green]local platform ready[/] at [bold]{st.endpoint}[/] (pid {st.pid})")
    console.print(f"  point any AWS client at it:  export AWS_ENDPOINT_URL={st.endpoint} "
                  "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
    console.print(f"  landing bucket: s3://{st.output('core', 'landingBucket')}   try: etl load samples/customers "
                  "--dataset customers")
    _print_console()


def _print_console() -> None:
    from etl.local import console as console_site

    site = console_site.info()
    if site:
        console.print(f"  compliance console: [bold]{site.url}[/]  sign in as [bold]{site.username}[/] / "
                      f"{site.password} (local user, new password per `etl local up`)")


@local_app.command("status")
def local_status() -> None:
    """List stacks, resources (and what the emulator does with each), queues with depths and DLQ depths."""
    try:
        st = targets.local_state()
    except targets.TargetError as exc:
        fail(str(exc))
    os.environ.update(st.client_env())
    console.print(f"endpoint [bold]{st.endpoint}[/]  pid {st.pid}  status {st.status}")
    res = Table(title="resources", show_lines=False)
    for col in ("stack", "type", "name", "local effect"):
        res.add_column(col)
    for stack, s in st.stacks.items():
        for r in s.resources:
            effect = r["effect"] if r["effect"] == "created" else f"[yellow]{r['effect']}[/]"
            res.add_row(stack, r["type"].split(":")[-1], r["name"], effect)
    console.print(res)
    queues = Table(title="queues")
    for col in ("function", "queue", "visible", "in flight", "DLQ", "DLQ depth"):
        queues.add_column(col)
    sqs = aws.client("sqs")
    for name, spec in st.functions.items():
        for m in spec["mappings"]:
            a = sqs.get_queue_attributes(QueueUrl=m["queue_url"], AttributeNames=["All"])["Attributes"]
            dlq_name = json.loads(a.get("RedrivePolicy", "{}")).get("deadLetterTargetArn", "").rsplit(":", 1)[-1]
            dlq_depth = "-"
            if dlq_name:
                dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
                dlq_depth = sqs.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]["ApproximateNumberOfMessages"]
            queues.add_row(name, m["queue_url"].rsplit("/", 1)[-1], a["ApproximateNumberOfMessages"],
                           a["ApproximateNumberOfMessagesNotVisible"], dlq_name or "[red]none[/]", str(dlq_depth))
    console.print(queues)


@local_app.command("down")
def local_down() -> None:
    """Stop the local platform and every process it started (also after the supervisor crashed)."""
    st = platform.PlatformState.load()
    if st is None:
        console.print("the local platform is not running")
        return
    stopped = platform.stop_recorded(st)
    platform.state_file().unlink(missing_ok=True)
    if not stopped:
        console.print("the local platform is not running (cleared its stale state)")
    elif st.pid in stopped:
        console.print(f"[green]local platform stopped[/] ({len(stopped)} processes)")
    else:
        console.print(f"[green]stopped {len(stopped)} process(es)[/] left by a platform whose supervisor had died")


@local_app.command("logs")
def local_logs(
    function: Annotated[str, typer.Argument(help="Function name, e.g. etl-local-ingest.")] = "",
    lines: Annotated[int, typer.Option("-n", help="How many lines.")] = 40,
    object_id: Annotated[str | None, typer.Option(
        "--object", help="Only log records of this object (its correlation_id), from every function, in time order."
    )] = None,
) -> None:
    """Show the last lines a function (or the supervisor) printed, or follow one object through every service."""
    logs = platform.state_dir() / "logs"
    if object_id:
        records = [r for path in ([logs / f"{function}.log"] if function else sorted(logs.glob("*.log")))
                   if path.exists() for r in _records(path) if r.get("correlation_id") == object_id]
        if not records:
            fail(f"no log record has correlation_id {object_id}; `etl status` lists object ids")
        for r in sorted(records, key=lambda r: r.get("timestamp", ""))[-lines:]:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    path = logs / f"{function}.log" if function else platform.state_dir() / "platform.log"
    if not path.exists():
        known = sorted(p.stem for p in logs.glob("*.log"))
        fail(f"no log at {path}; functions with logs: {', '.join(known) or 'none yet'}")
    sys.stdout.write("".join(path.read_text(errors="replace").splitlines(True)[-lines:]))


def _records(path: Path) -> list[dict]:
    """The JSON log records of a function log (other lines: tracebacks, local REPORT lines, are skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


# -- data producers --------------------------------------------------------------------------------
@app.command("load")
def load(
    path: Annotated[Path, typer.Argument(help="A file or a folder (uploaded recursively).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name: the first key segment.")],
    prefix: Annotated[str, typer.Option(help="Extra key prefix under the dataset folder.")] = "",
    env: EnvOpt = "local",
) -> None:
    """Upload files to the landing bucket under `<dataset>/` (a progress bar shows the bytes)."""
    if dataset not in load_datasets():
        err.print(f"[yellow]warning:[/] {dataset!r} has no contract (known: {', '.join(load_datasets())}); "
                  "ingest will keep the raw copy and reject it")
    try:
        target = targets.resolve(env)
        files = [(f, loader.landing_key(dataset, path, f, prefix)) for f in loader.files_under(path)]
    except (targets.TargetError, FileNotFoundError) as exc:
        fail(str(exc))
    bucket = target.out("core", "landingBucket")
    keys = list(loader.upload(files, bucket))
    console.print(f"[green]landed {len(keys)} object(s)[/] in s3://{bucket}/{dataset}/ — follow them with `etl status`")


@app.command("status")
def status(
    env: EnvOpt = "local",
    wide: Annotated[bool, typer.Option("--wide", help="One column per field (source key, chunks, rows, good, "
                                                      "quarantined): for terminals wider than 120 columns.")] = False,
) -> None:
    """Each landed object and how far it got: ingested, chunks transformed, rows, quarantined, or why it failed."""
    from etl.status import status_table

    try:
        target = targets.resolve(env)
    except targets.TargetError as exc:
        fail(str(exc))
    rows = progress.list_objects(aws.client("dynamodb"), target.out("core", "stateTable"))
    if not rows:
        console.print("no objects yet: land some with `etl load PATH --dataset NAME`")
        return
    console.print(status_table(rows, title=f"objects in {env}", wide=wide))


@app.command("watch")
def watch(
    env: EnvOpt = "local",
    timeout: Annotated[int, typer.Option(help="Stop watching after this many seconds.")] = 3600,
) -> None:
    """Live progress per object: chunks transformed of chunks planned, rows, stage, until every object is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        target = targets.resolve(env)
    except targets.TargetError as exc:
        fail(str(exc))
    final = {"transformed", "rejected", "failed"}
    tasks: dict[str, TaskID] = {}
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                  TextColumn("{task.fields[rows]}"), TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                  console=console) as bars:
        waiting: TaskID | None = bars.add_task("waiting for objects (`etl load`)…", total=None, stage="", rows="")
        while time.monotonic() < deadline:
            rows = progress.list_objects(aws.client("dynamodb"), target.out("core", "stateTable"))
            for r in rows:
                total = int(r.get("chunk_count") or 0) or None  # unknown until the object is planned
                stage = r.get("stage", "")
                done = len(r.get("chunks_done") or [])
                if stage in final:
                    total = total or 1
                    done = total if stage == "transformed" else done
                label = f"{r.get('dataset') or '-'} {str(r.get('source_key', ''))[-40:]}"
                if r["object_id"] not in tasks:
                    if waiting is not None:
                        bars.remove_task(waiting)
                        waiting = None
                    tasks[r["object_id"]] = bars.add_task(label, total=total, stage="", rows="")
                n_rows = r.get("rows_in")
                colour = "red" if stage in ("rejected", "failed") else "green" if stage == "transformed" else "cyan"
                bars.update(tasks[r["object_id"]], total=total, completed=done, stage=f"[{colour}]{stage}[/]",
                            rows=f"{int(n_rows):,} rows" if n_rows not in (None, "") else "")
            if rows and all(r.get("stage") in final for r in rows):
                break
            time.sleep(0.5)
        else:
            fail(f"stopped watching after {timeout}s; `etl status` shows where each object is")
    bad = [r for r in rows if r.get("stage") in ("rejected", "failed")]
    for r in bad:
        err.print(f"[red]{r.get('stage')}[/] {r.get('source_key')}: {r.get('reason') or 'see `etl status`'}")
    if bad:
        raise typer.Exit(1)


# -- datasets ---------------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list() -> None:
    """The dataset contracts shipped with the platform."""
    table = Table(title="datasets")
    for col in ("name", "version", "format", "columns", "subject columns", "partitioned by", "target MB",
                "raw TTL (days)"):
        table.add_column(col)
    for ds in load_datasets().values():
        table.add_row(ds.name, f"v{ds.version}" if ds.version else "unlocked", ds.format.type, str(len(ds.columns)),
                      ", ".join(ds.subject_columns) or "-",
                      "/".join(p.name for p in ds.partitioning) or "-",
                      str(ds.storage.target_file_mb), str(ds.raw_retention_days))
    console.print(table)


def _contract_files(paths: list[Path] | None) -> list[Path]:
    from contracts.datasets import DATASETS_DIR

    return list(paths or sorted(DATASETS_DIR.glob("*.toml")))


def _deployed(env: str | None) -> tuple[object, str] | None:
    """(Glue client, database) of an env, or None when no env is given."""
    if env is None:
        return None
    from etl.query import database_name

    try:
        targets.resolve(env)
    except targets.TargetError as exc:
        fail(str(exc))
    return aws.client("glue"), database_name(env)


def _print_changes(title: str, report: schema_evolution.Evolution) -> None:
    if not report.changes:
        return
    table = Table(title=title)
    for col in ("change", "column", "before", "after", "verdict", "effect"):
        table.add_column(col, overflow="fold")
    for c in report.changes:
        verdict = "[red]refused[/]" if c.breaking else "[green]allowed[/]"
        table.add_row(c.kind, c.subject, c.before, c.after, verdict, c.effect)
    console.print(table)


@datasets_app.command("validate")
def datasets_validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Contract files (default: every shipped contract).")]
    = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Also compare with the tables deployed in this env.")]
    = None,
    locked: Annotated[bool, typer.Option("--locked", help="Fail when a contract changed since its lock "
                                         "(`etl deploy` requires it).")] = False,
) -> None:
    """Check contract files, and their changes against the lock (and a deployed env): breaking ones fail.

    Every problem is named with its file and field; a breaking change says what would break and what
    to do instead (a new dataset, or an explicit migration).
    """
    catalog = _deployed(env)
    bad = 0
    for f in _contract_files(paths):
        try:
            ds = load_dataset_file(f)
            report = schema_evolution.against_lock(ds, f.parent)
        except (ContractError, OSError, schema_evolution.EvolutionError) as exc:
            bad += 1
            err.print(f"[red]error[/] {escape(str(exc))}")
            continue
        reports = [report]
        if catalog is not None:
            reports.append(catalog_sync.check_deployed(catalog[0], catalog[1], ds))
        broken = [r for r in reports if r.breaking]
        for r in broken:
            bad += 1
            err.print(f"[red]error[/] {f}: {escape(r.message())}")
        if broken:
            continue
        version = f"v{ds.version}" if ds.version else f"unlocked (would be v{report.version})"
        if not report.locked:
            what = ", ".join(f"{c.kind} {c.subject}" for c in report.changes) or "a new dataset"
            (err.print if locked else console.print)(
                f"[yellow]{'error' if locked else 'note'}[/]  {f}: changed since {report.baseline} ({what}; all "
                f"allowed): record it with `etl datasets lock {ds.name}`")
            bad += locked
            continue
        console.print(f"[green]ok[/]    {f}  ({ds.name} {version}: {len(ds.columns)} columns)")
    if bad:
        raise typer.Exit(1)


@datasets_app.command("diff")
def datasets_diff(
    names: Annotated[list[str] | None, typer.Argument(help="Datasets (default: every contract).")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Compare with what this env has deployed "
                                            "(default: with the lock files).")] = None,
    files: Annotated[bool, typer.Option("--files", help="With --env: read every file's footer and count files "
                                        "by the contract version they were written with.")] = False,
) -> None:
    """What a contract change does to the table, its partitions and the files already written."""
    catalog = _deployed(env)
    datasets = load_datasets()
    bad = 0
    for name in names or sorted(datasets):
        ds = datasets.get(name)
        if ds is None:
            fail(f"no contract {name!r} (known: {', '.join(sorted(datasets))})")
        if catalog is None:
            report = schema_evolution.against_lock(ds, DATASETS_DIR)
            _print_changes(f"{name}: contract against {report.baseline}", report)
            if not report.changes:
                console.print(f"{name}: no change of shape against {report.baseline}" if report.locked
                              else f"{name}: a new dataset (no lock yet): `etl datasets lock {name}` records v1")
        else:
            plan = catalog_sync.plan(catalog[0], catalog[1], ds, aws.s3_filesystem() if files else None)
            report = plan.evolution
            _print_changes(f"{name}: contract against {report.baseline} in {env}", report)
            effects = Table(title=f"{name}: effect in {env}", show_header=False)
            effects.add_row("table", "created by the next deploy" if not plan.deployed else
                            ("columns updated by `pulumi up`" if plan.table_changes else "unchanged"))
            effects.add_row("partitions", f"{plan.partitions_to_update} of {plan.partitions} get the table's "
                            "columns (`etl datasets apply`, run by `etl deploy`)")
            files_line = "never rewritten by the change: old files read NULL for new columns and widen on read; " \
                         "compaction rewrites them in the new version"
            if files:
                tally = ", ".join(f"{k}: {v}" for k, v in sorted(plan.files_by_version.items())) or "none"
                files_line = f"{plan.files} file(s) ({tally}); " + files_line
            effects.add_row("files", files_line)
            console.print(effects)
        if report.breaking:
            bad += 1
            err.print(f"[red]refused[/] {escape(report.message())}")
    if bad:
        raise typer.Exit(1)


@datasets_app.command("lock")
def datasets_lock(
    names: Annotated[list[str] | None, typer.Argument(help="Datasets (default: every contract).")] = None,
) -> None:
    """Record each changed contract as its next version in <name>.lock.json (refused if the change breaks)."""
    datasets = load_datasets()
    bad = 0
    for name in names or sorted(datasets):
        ds = datasets.get(name)
        if ds is None:
            fail(f"no contract {name!r} (known: {', '.join(sorted(datasets))})")
        try:
            lock, report = schema_evolution.next_lock(ds, DATASETS_DIR)
        except schema_evolution.EvolutionError as exc:
            bad += 1
            err.print(f"[red]refused[/] {escape(str(exc))}")
            continue
        if report.locked:
            console.print(f"[green]ok[/]     {name} v{report.version}: unchanged")
            continue
        path = schema_evolution.write_lock(lock, DATASETS_DIR)
        console.print(f"[green]locked[/] {name} v{report.version} in {path} — commit it with the contract")
    load_datasets.cache_clear()
    if bad:
        raise typer.Exit(1)


@datasets_app.command("apply")
def datasets_apply(env: EnvOpt = "local") -> None:
    """Bring an env's tables and every registered partition in line with the contracts (after `pulumi up`).

    `etl deploy` runs it after the core stack; run it by hand after `pulumi up`. Refuses a breaking change.
    """
    catalog = _deployed(env)
    assert catalog is not None
    glue, database = catalog
    table = Table(title=f"catalog of {env}")
    for col in ("dataset", "table", "partitions", "updated"):
        table.add_column(col)
    bad = 0
    for ds in load_datasets().values():
        try:
            r = catalog_sync.apply(glue, database, ds)
        except (schema_evolution.EvolutionError, catalog_sync.CatalogError) as exc:
            bad += 1
            err.print(f"[red]error[/] {escape(str(exc))}")
            continue
        table.add_row(ds.name, "updated" if r.table_updated else "in line", str(r.partitions),
                      str(r.partitions_updated))
    console.print(table)
    if bad:
        raise typer.Exit(1)


@app.command("demo")
def demo(timeout: Annotated[int, typer.Option(help="Seconds to wait for the data to flow.")] = 90) -> None:
    """Start the local platform, land the sample datasets (and two bad files), show them flow, stop."""
    from etl import demo as demo_mod

    demo_mod.run(console, timeout)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

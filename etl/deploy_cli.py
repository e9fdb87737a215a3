"""`etl deploy|preview|destroy|init ENV`: the stacks of an environment, in order, through Pulumi."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from etl import deploy

app = typer.Typer(help=__doc__)
console = Console()
err = Console(stderr=True)

EnvArg = Annotated[str, typer.Argument(help="Environment, e.g. dev, staging, prod (stacks core-ENV, ingest-ENV, …).")]
OnlyOpt = Annotated[
    list[str] | None,
    typer.Option("--only", "-o", help="Only this component (core or a service); repeat for several."),
]


def _fail(exc: deploy.DeployError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _stream(line: str) -> None:
    """Pulumi's own output, as it comes (not re-rendered: it is already formatted)."""
    console.out(line.rstrip("\n"), highlight=False)


def _build_layers(env: str, only: list[str] | None, arch: str) -> None:
    """The program publishes the layers `etl build` made: build them first, so a deploy never ships stale ones."""
    from etl import build

    for stack in deploy.plan("deploy", env, only):
        component = stack.split("-", 1)[0]
        if component in build.buildable_services():
            with console.status(f"building the {component} layer for {arch}…"):
                _, sizes = build.build_service(component, arch)
            console.print(f"built {component}: layer {sizes.layer_zipped / 1e6:.1f} MB zipped")


def _run(action: deploy.Action, env: str, only: list[str] | None, arch: str | None = None) -> None:
    from contracts.datasets import DATASETS_DIR, load_datasets
    from etl import catalog_sync

    try:
        if action != "destroy":  # contract changes that break the lake stop here (docs/design/schema-evolution.md)
            deploy.require_cli()
            catalog_sync.deploy_gate(env, load_datasets(), DATASETS_DIR, _stream)
        if arch is not None:
            deploy.require_cli()
            _build_layers(env, only, arch)
        outcomes = deploy.run(action, env, only, on_output=_stream)
        if action == "deploy" and any(o.stack.startswith("core-") for o in outcomes):
            catalog_sync.after_deploy(env, load_datasets(), _stream)
    except deploy.DeployError as exc:
        _fail(exc)
    except (catalog_sync.CatalogError, catalog_sync.evolution.EvolutionError) as exc:
        _fail(deploy.DeployError(f"deployed, but the catalog step failed: {exc}; fix it and run "
                                 f"`etl datasets apply --env {env}`"))
    table = Table(title=f"{action} {env}")
    table.add_column("stack")
    table.add_column("result")
    table.add_column("resource changes")
    for o in outcomes:
        changes = ", ".join(f"{k} {v}" for k, v in sorted(o.changes.items())) or "-"
        table.add_row(o.stack, o.status, changes)
    console.print(table)


ArchOpt = Annotated[str, typer.Option("--arch", help="Lambda architecture of the layers to build (arm64|x86_64).")]


@app.command("deploy")
def deploy_cmd(env: EnvArg, only: OnlyOpt = None, arch: ArchOpt = "arm64") -> None:
    """Create or update every stack of ENV: core first, then each service (`pulumi up`, streamed).

    Builds each service's dependency layer first (`etl build`)."""
    _run("deploy", env, only, arch)


@app.command("preview")
def preview_cmd(env: EnvArg, only: OnlyOpt = None, arch: ArchOpt = "arm64") -> None:
    """Show what `etl deploy ENV` would change, stack by stack, without changing anything."""
    _run("preview", env, only, arch)


@app.command("destroy")
def destroy_cmd(
    env: EnvArg,
    only: OnlyOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every resource of ENV: services first, core last (buckets must be emptied first)."""
    if not yes:
        try:
            stacks = deploy.plan("destroy", env, only)
        except deploy.DeployError as exc:
            _fail(exc)
        typer.confirm(f"destroy {', '.join(stacks)}? Every resource and its data goes", abort=True)
    _run("destroy", env, only)


@app.command("init")
def init_cmd(
    env: EnvArg,
    only: OnlyOpt = None,
    region: Annotated[str, typer.Option(help="AWS region of every stack of the env.")] = deploy.DEFAULT_REGION,
    alert_email: Annotated[str | None, typer.Option(help="E-mail subscribed to the alerts topic.")] = None,
    arch: Annotated[str, typer.Option(help="Lambda architecture: arm64 or x86_64.")] = "arm64",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing stack config files.")] = False,
) -> None:
    """Write Pulumi.<component>-ENV.yaml for each stack with the documented defaults (never overwrites)."""
    overrides = {"lambdaArchitecture": arch}
    if alert_email:
        overrides["alertEmail"] = alert_email
    try:
        outcomes = deploy.init(env, only, force=force, region=region, overrides=overrides)
    except deploy.DeployError as exc:
        _fail(exc)
    for o in outcomes:
        if o.written:
            console.print(f"[green]wrote[/] {o.path.name}")
        else:
            console.print(f"[yellow]kept[/]  {o.path.name} (exists; --force overwrites it)")
    console.print(f"next: review the files, then `etl preview {env}` and `etl deploy {env}`")

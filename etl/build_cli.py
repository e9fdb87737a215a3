"""`etl build [SERVICE]`: Lambda function archives and dependency layers, with their sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from etl import build
from infra.packaging import BUILD_DIR

app = typer.Typer(help=__doc__)
console = Console()
err = Console(stderr=True)


def _mb(n: int) -> str:
    return f"{n / build.MB:.1f} MB" if n >= build.MB else f"{n / 1024:.0f} KB"


@app.command("build")
def build_cmd(
    service: Annotated[str | None, typer.Argument(help="One service (default: every service with code).")] = None,
    arch: Annotated[str, typer.Option(help="Lambda architecture: arm64 or x86_64.")] = "arm64",
    out_dir: Annotated[Path, typer.Option(help="Where the zips go.")] = BUILD_DIR,
) -> None:
    """Build each service's code archive and its dependency layer for Python 3.12 on ARCH; print sizes."""
    services = [service] if service else build.buildable_services()
    table = Table(title=f"Lambda artifacts ({arch}, {build.RUNTIME})")
    for col in ("service", "code zip", "code unzipped", "layer zip", "layer unzipped", "trimmed",
                "total unzipped (≤ 250 MB)", "upload"):
        table.add_column(col, justify="left" if col in ("service", "upload") else "right")
    problems: list[str] = []
    for name in services:
        try:
            with console.status(f"building {name} for {arch} (pip for manylinux, Python {build.PYTHON_VERSION})…"):
                layer, sizes = build.build_service(name, arch, out_dir)
        except (build.BuildError, FileNotFoundError) as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        problems += sizes.problems
        total = _mb(sizes.total_unzipped)
        table.add_row(
            name, _mb(sizes.function_zipped), _mb(sizes.function_unzipped), _mb(sizes.layer_zipped),
            _mb(sizes.layer_unzipped), _mb(layer.trimmed_bytes), f"[red]{total}[/]" if sizes.problems else total,
            "via S3 (> 50 MB)" if sizes.needs_s3 else "direct",
        )
    console.print(table)
    console.print(f"artifacts in {out_dir}: <service>.zip (code) and <service>-layer-{arch}.zip (layer)")
    for p in problems:
        err.print(f"[bold red]over a limit:[/] {escape(p)}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)

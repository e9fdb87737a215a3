"""`etl load`: upload files of any size to the landing bucket under `<dataset>/`, with a progress bar.

Files stream from disk in multipart uploads (never read whole into memory); the part size grows
with the file so that S3's 10,000-part limit is never reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from contracts import aws

MIN_PART = 8 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit per multipart upload


def transfer_config(size: int) -> TransferConfig:
    """Multipart above 8 MiB, parts large enough that any file (up to S3's 5 TB) fits in 10,000 of them."""
    part = max(MIN_PART, -(-size // (MAX_PARTS - 100)))
    return TransferConfig(multipart_threshold=MIN_PART, multipart_chunksize=part)


def files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(f"{path} does not exist")


def landing_key(dataset: str, root: Path, file: Path, prefix: str = "") -> str:
    rel = file.name if root.is_file() else file.relative_to(root).as_posix()
    return "/".join(p for p in (dataset, prefix.strip("/"), rel) if p)


def upload(files: list[tuple[Path, str]], bucket: str, s3: Any | None = None) -> Iterator[str]:
    """Upload each (file, key) and yield keys as they land; a bar shows bytes and speed."""
    s3 = s3 or aws.client("s3")
    total = sum(f.stat().st_size for f, _ in files)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"loading {len(files)} file(s)", total=total)
        for file, key in files:
            s3.upload_file(str(file), bucket, key, Callback=lambda n: bar.advance(task, n),
                           Config=transfer_config(file.stat().st_size))
            yield key

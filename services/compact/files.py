"""Moving lake objects to and from the work directory (S3 on AWS, a dict in unit tests).

Compaction reads whole small files, so each input is downloaded once (in parallel) instead of
being read through many small ranged GETs; outputs are uploaded to keys the committer reserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from boto3.s3.transfer import TransferConfig

#: parallel downloads of one bin's inputs (small files: latency-bound, not bandwidth-bound)
DOWNLOAD_THREADS = 32


class LakeFiles(Protocol):
    def download(self, keys: Sequence[str], paths: Sequence[Path]) -> None: ...
    def upload(self, path: Path, key: str) -> None: ...


class S3LakeFiles:
    """The lake bucket through boto3's managed transfers (multipart for big outputs)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.config = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024,
                                     max_concurrency=8)

    def download(self, keys: Sequence[str], paths: Sequence[Path]) -> None:
        def one(pair: tuple[str, Path]) -> None:
            self.s3.download_file(self.bucket, pair[0], str(pair[1]))

        with ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, max(1, len(keys)))) as pool:
            list(pool.map(one, zip(keys, paths, strict=True)))

    def upload(self, path: Path, key: str) -> None:
        self.s3.upload_file(str(path), self.bucket, key, Config=self.config)

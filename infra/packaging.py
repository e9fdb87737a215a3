"""Deterministic Lambda code archives: the service folder plus the shared contracts package.

Same sources → same bytes → same hash, so `pulumi up` only updates a function whose code changed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "lambda"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Archive:
    path: Path
    sha256_b64: str
    files: tuple[str, ...]


def _sources(service: str) -> list[tuple[Path, str]]:
    roots = [ROOT / "contracts", ROOT / "services" / service]
    found = [(ROOT / "services" / "__init__.py", "services/__init__.py")]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"cannot package {service!r}: {root} does not exist")
        for p in root.rglob("*"):
            rel = p.relative_to(ROOT)
            if p.is_file() and not (_SKIP_DIRS & set(rel.parts)) and p.suffix not in _SKIP_SUFFIXES:
                found.append((p, rel.as_posix()))
    return sorted(found, key=lambda item: item[1])


def build_archive(service: str, out_dir: Path = BUILD_DIR) -> Archive:
    """Zip the service with fixed timestamps, permissions and ordering."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{service}.zip"
    entries = _sources(service)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes building at once never share a temp file
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for src, arcname in entries:
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, src.read_bytes())
    tmp.replace(path)
    return Archive(path=path, sha256_b64=file_sha256_b64(path), files=tuple(a for _, a in entries))


def build_dir() -> Path:
    """Where `etl build` leaves artifacts (ETL_BUILD_DIR overrides, e.g. for tests)."""
    return Path(os.environ.get("ETL_BUILD_DIR") or BUILD_DIR)


def file_sha256_b64(path: Path) -> str:
    """What Lambda's `source_code_hash` compares: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()

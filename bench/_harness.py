"""What every benchmark needs alike: the `etl` CLI in a subprocess, a machine line, its docs section."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"


def tpch_orders(sf: float, work: Path, fmt: str = "csv", threads: int | None = 1) -> Path:
    """TPC-H `orders` at scale factor `sf` as work/sf<sf>/orders.<fmt> (csv or parquet), generated once and
    reused; `threads` None lets tpchgen-cli pick."""
    target = work / f"sf{sf:g}" / f"orders.{fmt}"
    if target.exists():
        return target
    tool = shutil.which("tpchgen-cli", path=str(Path(sys.executable).parent)) or shutil.which("tpchgen-cli")
    if tool is None:
        raise SystemExit("tpchgen-cli not found: .venv/bin/pip install tpchgen-cli")
    target.parent.mkdir(parents=True, exist_ok=True)
    thread_args = ["--num-threads", str(threads)] if threads else []
    subprocess.run([tool, fmt, "-s", f"{sf:g}", "-T", "orders", "-o", str(target.parent), *thread_args, "--quiet"],
                   check=True)
    return target


def etl(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, with the caller's environment (ETL_LOCAL_DIR, AWS_ENDPOINT_URL …)."""
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={**os.environ, "COLUMNS": "200"})


def machine(*libraries: str) -> str:
    """`Machine: <cpu>, <n> CPUs, Python x, lib y …` for the section header: ratios only compare within a run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = "".join(f", {lib} {_version_or_absent(lib)}" for lib in libraries)
    return f"Machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}{libs}."


def _version_or_absent(lib: str) -> str:
    try:
        return version(lib)
    except PackageNotFoundError:
        return "(not installed)"


def local_records(log: Path, *kinds: str) -> Iterator[dict[str, Any]]:
    """The local platform's own records (`{"local": kind, ...}`: invocation REPORTs, schedules) in a function's
    log. Two host processes of a function share its log, so a line can hold a record with another's output
    run into it: the first JSON value of the line is taken and the rest ignored."""
    decoder = json.JSONDecoder()
    for line in log.read_text(errors="replace").splitlines():
        if any(line.startswith(f'{{"local": "{kind}"') for kind in kinds):
            try:
                yield decoder.raw_decode(line)[0]
            except json.JSONDecodeError:  # cut short by the other host's write: not a whole record
                continue


def update_docs(name: str, section: str) -> None:
    """Replace (or append) the `<!-- name-bench:start/end -->` section of docs/benchmarks.md."""
    start, end = f"<!-- {name}-bench:start -->", f"<!-- {name}-bench:end -->"
    text = DOCS.read_text()
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(text)

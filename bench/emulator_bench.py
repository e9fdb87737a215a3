"""The emulator's memory and latency on big objects: stock moto server beside the local platform's.

    .venv/bin/python bench/emulator_bench.py --mb 173 1730 [--stock-mb 173] [--update-docs]

Runs moto server in its own process (stock, or with `etl.local.moto_s3` installed as the local
platform does) and, per object size: uploads a file as `etl load` does (multipart, 8 MiB parts),
copies it to a second versioned bucket as ingest does (`services.ingest.copy`: CopyObject below
1 GiB, UploadPartCopy above), reads the copy whole with checksum validation, reads 20 ranges of
1 MiB, copies it over itself three times (three more versions) and lists the versions five times.
The emulator's resident memory is sampled every 50 ms; the table gives its peak per phase.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _harness import machine, update_docs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = """
import sys
from moto.server import ThreadedMotoServer
if sys.argv[1] == "patched":
    from etl.local import moto_s3
    moto_s3.install()
srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
srv.start()
print(srv.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""
LINE = b"1234567,36901,O,173665.47,1996-01-02,5-LOW,Clerk#000000951,0,nstructions sleep furiously among \n"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def phase(self) -> float:
        peak, self.peak = max(self.peak, rss_mb(self.pid)), 0.0
        return peak


def make_file(path: Path, mb: int) -> None:
    block = LINE * (1 << 20 // len(LINE) + 1)
    left = mb * 10**6
    with open(path, "wb") as f:
        while left > 0:
            f.write(block[:left])
            left -= min(left, len(block))


def run(kind: str, sizes: list[int], workdir: Path) -> list[dict]:
    import boto3
    from botocore.config import Config

    proc = subprocess.Popen([sys.executable, "-c", SERVER, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    port = int(proc.stdout.readline())
    s3, unchecked = (boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing",
                                  config=Config(response_checksum_validation=v))
                     for v in ("when_supported", "when_required"))
    for b in ("landing-bench", "raw-bench"):
        s3.create_bucket(Bucket=b)
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    sampler = Sampler(proc.pid)
    sampler.start()
    rows = []
    try:
        for mb in sizes:
            path = workdir / f"obj-{mb}.csv"
            make_file(path, mb)
            rows.append(measure(kind, mb, path, (s3, unchecked), sampler, proc.pid))
            path.unlink()
            print(rows[-1], flush=True)
    finally:
        sampler.stop.set()
        proc.stdin.close()
        proc.wait(timeout=30)
    return rows


def measure(kind: str, mb: int, path: Path, clients: tuple, sampler: Sampler, pid: int) -> dict:
    """One object through the phases; each phase's seconds and the emulator's peak RSS during it."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import FlexibleChecksumError

    from services.ingest.copy import _TRANSFER

    s3, unchecked = clients
    key, size = f"orders/{mb}.csv", path.stat().st_size
    sampler.phase()
    row: dict = {"kind": kind, "mb": mb, "idle": rss_mb(pid), "checksum": "valid"}

    def timed(name: str, fn: Callable[[], object]) -> None:
        t0 = time.perf_counter()
        fn()
        row[name] = (time.perf_counter() - t0, sampler.phase())

    def read_whole() -> None:
        try:
            body = s3.get_object(Bucket="raw-bench", Key=key, ChecksumMode="ENABLED")["Body"]
            n = sum(len(b) for b in iter(lambda: body.read(1 << 20), b""))
        except FlexibleChecksumError:  # stock moto: the copy's checksum is not its bytes'
            row["checksum"] = "FlexibleChecksumError"
            body = unchecked.get_object(Bucket="raw-bench", Key=key)["Body"]
            n = sum(len(b) for b in iter(lambda: body.read(1 << 20), b""))
        assert n == size, n

    def ranges() -> None:
        for i in range(20):
            start = (size // 20) * i
            got = s3.get_object(Bucket="raw-bench", Key=key, Range=f"bytes={start}-{start + (1 << 20) - 1}")
            assert len(got["Body"].read()) == min(1 << 20, size - start)

    def versions() -> None:
        for v in range(3):
            s3.copy({"Bucket": "raw-bench", "Key": key}, "raw-bench", key, Config=_TRANSFER,
                    ExtraArgs={"Metadata": {"v": str(v)}, "MetadataDirective": "REPLACE"})

    timed("upload", lambda: s3.upload_file(str(path), "landing-bench", key, Config=TransferConfig()))
    timed("copy", lambda: s3.copy({"Bucket": "landing-bench", "Key": key}, "raw-bench", key, Config=_TRANSFER,
                                  ExtraArgs={"Metadata": {"etl-object-id": "x"}, "MetadataDirective": "REPLACE"}))
    timed("get", read_whole)
    timed("ranges", ranges)
    timed("versions", versions)
    timed("list", lambda: [s3.list_object_versions(Bucket="raw-bench") for _ in range(5)])
    return row


PHASES = ("upload", "copy", "get", "ranges", "versions", "list")


def table(rows: list[dict]) -> list[str]:
    out = ["| emulator | object (MB) | " + " | ".join(f"{p} s / peak MB" for p in PHASES) + " | copy's checksum |",
           "|---|---:|" + "---:|" * len(PHASES) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r[p][0]:.2f} / {r[p][1]:,.0f}" for p in PHASES)
        out.append(f"| {r['kind']} | {r['mb']:,} | {cells} | {r['checksum']} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[173, 1730], help="object sizes (MB) for the platform's")
    parser.add_argument("--stock-mb", type=int, nargs="*", default=[173], help="object sizes for stock moto")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="emulator-bench-") as tmp:
        rows = run("stock", args.stock_mb, Path(tmp)) if args.stock_mb else []
        rows += run("patched", args.mb, Path(tmp))
    lines = [
        "## The emulator's S3 data plane: memory and latency on big objects",
        "",
        f"Reproduce: `.venv/bin/python bench/emulator_bench.py --mb {' '.join(map(str, args.mb))} --stock-mb "
        f"{' '.join(map(str, args.stock_mb))} --update-docs`. {machine('moto')}",
        "",
        "Per object: upload as `etl load` does (multipart, 8 MiB parts), copy to a second bucket as ingest does "
        "(CopyObject below 1 GiB, UploadPartCopy above), read the copy whole with checksum validation, 20 ranged "
        "reads of 1 MiB, three copies over itself (versions), five ListObjectVersions. Each cell: seconds for the "
        "phase / the emulator process's peak resident memory during it (sampled every 50 ms). *stock* is moto "
        "server as shipped; *patched* is the local platform's emulator (`etl/local/moto_s3.py`).",
        "",
        *table(rows),
        "",
        f"1-minute load average {load:.1f} before and {os.getloadavg()[0]:.1f} after the runs.",
    ]
    section = "\n".join(lines)
    print(section)
    if args.update_docs:
        update_docs("emulator", section)


if __name__ == "__main__":
    main()

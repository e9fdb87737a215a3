"""Per-service Lambda dependency layers: built for the target architecture, trimmed, reproducible.

A layer is `pip install --target` of the service's requirements for CPython 3.12 on manylinux
(Lambda's python3.12 runtime is Amazon Linux 2023, glibc 2.34), with versions pinned to the ones this
environment runs its tests against, trimmed of what a function never loads, and zipped with sorted
entries, fixed timestamps and normalised permissions: same inputs, same bytes, same hash.

Lambda limits checked here: function code + layers unzipped ≤ 250 MB; a zip over 50 MB cannot be
uploaded directly and must be staged in S3 (infra/artifacts.py does that).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.packaging import BUILD_DIR, build_archive

ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
PYTHON_VERSION = "3.12"
RUNTIME = "python3.12"
#: Amazon Linux 2023 ships glibc 2.34: every manylinux_2_X with X ≤ 34 runs there
GLIBC_MINOR_MAX, GLIBC_MINOR_MIN = 34, 17
MB = 1024 * 1024
UNZIPPED_LIMIT = 250 * MB  # function code + all its layers, unzipped
DIRECT_UPLOAD_LIMIT = 50 * MB  # a zip above this must be staged in S3

#: aws-xray-sdk: powertools' Tracer imports it (the `tracer` extra, which the closure below does not follow)
_BASE = ("aws-lambda-powertools", "aws-xray-sdk", "pydantic")
SERVICE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "ingest": _BASE,
    "transform": (*_BASE, "pyarrow", "numpy"),  # services/transform uses numpy beside pyarrow
    "compact": (*_BASE, "pyarrow"),
    # services/erasure/copies.py uses numpy beside pyarrow; bloom.py hashes probes with xxhash (C)
    "erasure": (*_BASE, "pyarrow", "numpy", "xxhash"),
}
#: the python3.12 runtime already has these (an older or newer copy in the layer would shadow it)
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")
#: directories no function loads: bytecode caches (Lambda compiles on import), test suites, C headers
_TRIM_DIRS = {"__pycache__", "tests", "include"}
#: build-only files: type stubs, Cython sources, C/C++ headers and sources, static libraries
_TRIM_SUFFIXES = {".pyc", ".pyo", ".pyi", ".pyx", ".pxd", ".pxi", ".h", ".hpp", ".cc", ".cpp", ".a", ".lib"}
#: per-package parts the services never import (pyarrow Flight is RPC: 30 MB of libraries)
UNUSED_PARTS: dict[str, tuple[str, ...]] = {
    "pyarrow": (
        "pyarrow/src",
        "pyarrow/flight.py",
        "pyarrow/_flight.*",
        "pyarrow/libarrow_flight.so*",
        "pyarrow/libarrow_python_flight.so*",
    ),
}
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SHARED_LIB = re.compile(r"^(lib.+\.so)((?:\.\d+)*)$")


class BuildError(RuntimeError):
    """A layer cannot be built or breaks a Lambda limit; the message says which and why."""


@dataclass(frozen=True)
class LayerArtifact:
    service: str
    arch: str
    path: Path
    sha256_b64: str  # what `source_code_hash` expects
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    trimmed_bytes: int
    distributions: tuple[str, ...]


@dataclass(frozen=True)
class Sizes:
    """A function and its layer against the Lambda limits."""

    service: str
    function_zipped: int
    function_unzipped: int
    layer_zipped: int
    layer_unzipped: int
    problems: tuple[str, ...] = field(default=())

    @property
    def total_unzipped(self) -> int:
        return self.function_unzipped + self.layer_unzipped

    @property
    def needs_s3(self) -> bool:
        return max(self.function_zipped, self.layer_zipped) > DIRECT_UPLOAD_LIMIT


# -- what to install -----------------------------------------------------------------------------------
def requirements(service: str) -> tuple[str, ...]:
    if service not in SERVICE_REQUIREMENTS:
        raise BuildError(f"no layer requirements for {service!r}; services: {', '.join(SERVICE_REQUIREMENTS)}")
    return SERVICE_REQUIREMENTS[service]


def installed_closure(names: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `names` need (markers evaluated here, extras not followed)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"{name} is not installed in {sys.prefix}; install the project first") from None
        found[name] = dist
        for spec in dist.requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return dict(sorted(found.items()))


def constraints(names: Iterable[str]) -> list[str]:
    """`name==version` for every distribution of the closure: the layer gets what the tests ran against."""
    return [f"{name}=={dist.version}" for name, dist in installed_closure(names).items()]


def platform_tags(arch: str) -> list[str]:
    """manylinux tags Lambda can load, newest first: manylinux_2_28 alone would miss 2014-only wheels,
    manylinux2014 alone silently resolves to old releases of packages that dropped it (pyarrow)."""
    machine = ARCHITECTURES.get(arch)
    if machine is None:
        raise BuildError(f"architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(GLIBC_MINOR_MAX, GLIBC_MINOR_MIN - 1, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def pip_command(reqs: Sequence[str], target: Path, arch: str, constraints_file: Path | None = None,
                pip_args: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
           "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
           "--target", str(target)]
    for tag in platform_tags(arch):
        cmd += ["--platform", tag]
    if constraints_file is not None:
        cmd += ["--constraint", str(constraints_file)]
    return [*cmd, *pip_args, *reqs]


def run_pip(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if "is ignored" not in line)[-2000:]
        raise BuildError(f"pip failed ({proc.returncode}):\n{tail}")


# -- trimming --------------------------------------------------------------------------------------------------
@dataclass
class TrimReport:
    files: int = 0
    bytes: int = 0

    def remove(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            for f in path.rglob("*"):
                if f.is_file():
                    self.files += 1
                    self.bytes += f.stat().st_size
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            self.files += 1
            self.bytes += path.lstat().st_size
            path.unlink()


def trim(root: Path, unused: Mapping[str, Sequence[str]] = UNUSED_PARTS,
         provided: Sequence[str] = PROVIDED_BY_RUNTIME) -> TrimReport:
    """Remove what no function loads; never a module a kept package imports at import time."""
    report = TrimReport()
    for name in provided:
        for p in [root / name, *root.glob(f"{name}-*.dist-info")]:
            report.remove(p)
    report.remove(root / "bin")  # console scripts: nothing runs them in Lambda
    for patterns in unused.values():
        for pattern in patterns:
            for p in sorted(root.glob(pattern)):
                report.remove(p)
    for p in sorted(root.rglob("*"), key=lambda q: len(q.parts)):
        if not p.exists() or p.parent.name.endswith(".dist-info"):
            continue
        if (p.is_dir() and p.name in _TRIM_DIRS and p.parent != root) or (p.is_file() and p.suffix in _TRIM_SUFFIXES):
            report.remove(p)
    _drop_link_names(root, report)
    return report


def _drop_link_names(root: Path, report: TrimReport) -> None:
    """Wheels carry libfoo.so, libfoo.so.N and libfoo.so.N.M.K as three copies; the loader only asks
    for the soname libfoo.so.N (DT_NEEDED), the others are for linking at build time."""
    groups: dict[tuple[Path, str], list[tuple[Path, str]]] = {}
    for p in root.rglob("lib*.so*"):
        m = _SHARED_LIB.match(p.name)
        if m and p.is_file():
            groups.setdefault((p.parent, m.group(1)), []).append((p, m.group(2)))
    for group in groups.values():
        members = [p for p, _ in group]
        sonames = [p for p, version in group if version.count(".") == 1]
        if len(sonames) != 1:
            continue
        keep = sonames[0]
        for p in members:
            if p != keep and p.stat().st_size == keep.stat().st_size and p.read_bytes() == keep.read_bytes():
                report.remove(p)


# -- zipping ---------------------------------------------------------------------------------------------------
def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def zip_dir(root: Path, out: Path, prefix: str = "python/") -> tuple[str, int]:
    """Reproducible zip of `root` under `prefix` (Lambda puts /opt/python on sys.path): (sha256 b64, files)."""
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # processes building at once never share a temp file
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for p in files:
            info = zipfile.ZipInfo(prefix + p.relative_to(root).as_posix(), date_time=_EPOCH)
            mode = 0o755 if p.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the build host: the mode bits mean the same everywhere
            with p.open("rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
    tmp.replace(out)
    return sha256_b64(out), len(files)


def sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


# -- building --------------------------------------------------------------------------------------------------
Installer = Callable[[Sequence[str], Path], None]  # (requirements, target dir) -> files in target dir


def pip_installer(arch: str, pin: bool = True, pip_args: Sequence[str] = ()) -> Installer:
    """The real install step: pip for the target platform, pinned to this environment's versions."""

    def install(reqs: Sequence[str], target: Path) -> None:
        cfile = None
        if pin:
            cfile = target.parent / f"{target.name}.constraints.txt"
            cfile.write_text("\n".join(constraints(reqs)) + "\n")
        run_pip(pip_command(reqs, target, arch, cfile, pip_args))

    return install


def build_layer(service: str, arch: str = "arm64", out_dir: Path = BUILD_DIR, *,
                installer: Installer | None = None, reqs: Sequence[str] | None = None) -> LayerArtifact:
    """Install, trim and zip the service's dependencies to `<out_dir>/<service>-layer-<arch>.zip`."""
    platform_tags(arch)  # validates arch
    reqs = tuple(reqs if reqs is not None else requirements(service))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{service}-layer-", dir=out_dir) as tmp:
        target = Path(tmp) / "python"
        target.mkdir()
        (installer or pip_installer(arch))(reqs, target)
        report = trim(target)
        unzipped = dir_bytes(target)
        dists = tuple(sorted(p.name.removesuffix(".dist-info") for p in target.glob("*.dist-info")))
        path = out_dir / f"{service}-layer-{arch}.zip"
        digest, files = zip_dir(target, path)
    return LayerArtifact(service, arch, path, digest, path.stat().st_size, unzipped, files, report.bytes, dists)


def archive_unzipped_bytes(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist())


def check_limits(service: str, function_zip: Path, layer: LayerArtifact | None) -> Sizes:
    """Sizes of a function and its layer, with every Lambda limit they break named."""
    fz, fu = function_zip.stat().st_size, archive_unzipped_bytes(function_zip)
    lz, lu = (layer.zipped_bytes, layer.unzipped_bytes) if layer else (0, 0)
    problems = []
    if fu + lu > UNZIPPED_LIMIT:
        problems.append(f"{service}: function + layer unzipped is {(fu + lu) / MB:.1f} MB, over Lambda's 250 MB")
    return Sizes(service, fz, fu, lz, lu, tuple(problems))


def build_service(service: str, arch: str = "arm64", out_dir: Path = BUILD_DIR,
                  installer: Installer | None = None) -> tuple[LayerArtifact, Sizes]:
    """The function archive (infra.packaging, as the program builds it) and its layer, checked."""
    function = build_archive(service, out_dir)
    layer = build_layer(service, arch, out_dir, installer=installer)
    return layer, check_limits(service, function.path, layer)


def buildable_services(root: Path | None = None) -> list[str]:
    """Services with a layer definition whose code exists in services/."""
    base = root or Path(__file__).resolve().parent.parent / "services"
    return [s for s in SERVICE_REQUIREMENTS if (base / s / "__init__.py").exists()]


def copy_installed(names: Iterable[str], target: Path, skip: Sequence[str] = PROVIDED_BY_RUNTIME) -> list[str]:
    """A layer directory from this environment's installed files (host architecture, no network):
    what tests use to prove a trimmed layer still imports."""
    skipped = {canonicalize_name(s) for s in skip}
    copied = []
    for name, dist in installed_closure(names).items():
        if name in skipped:
            continue
        for f in dist.files or ():
            src = Path(str(dist.locate_file(f)))
            if f.parts[0] in ("..", "") or os.path.isabs(str(f)) or not src.is_file():
                continue  # console scripts and data outside site-packages
            dst = target / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        copied.append(f"{name}-{dist.version}")
    return copied

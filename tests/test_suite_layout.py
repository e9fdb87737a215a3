"""The suite's own rules: every platform module runs in a work group, no test module imports another."""

from __future__ import annotations

import ast

from tests.conftest import LONG_MODULES, PLATFORM_GROUPS, ROOT, platform_group

TEST_MODULES = sorted(ROOT.glob("tests/**/test_*.py"))


def test_every_module_that_starts_a_platform_has_a_group() -> None:
    platform_modules = [p.relative_to(ROOT).as_posix() for p in TEST_MODULES
                        if p.relative_to(ROOT).as_posix().startswith(("tests/e2e/", "tests/console/"))]
    assert platform_modules, "the e2e and console tests are found"
    assert all(platform_group(f"{m}::test") for m in platform_modules)
    assert platform_group("tests/services/test_erasure_engine.py::test_x") is None
    assert len(set(PLATFORM_GROUPS.values())) == 2, "one group per platform worker (Makefile TEST_WORKERS)"


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in helper modules (erasure_world.py, helpers.py, harness.py …), not in test modules."""
    offenders = []
    for path in TEST_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == []


def test_the_long_modules_handed_out_first_exist_and_start_no_platform() -> None:
    """A renamed module would silently lose its place at the front of the queue."""
    assert all((ROOT / m).is_file() and platform_group(f"{m}::test") is None for m in LONG_MODULES)

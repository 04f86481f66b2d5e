"""The shape of the code, checked with the field's tools: ruff's lint and formatter, and
import-linter's contract (pyproject.toml [tool.importlinter]: no service imports another, the
runtime library imports no service, domain modules and alert rules stay pure). Plus one rule
of our own: no product module over 500 lines (CONVENTIONS.md), except those still waiting
to be split, listed below so the list can only shrink."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("services", "shared", "workflows", "devtools")
MAX_LINES = 500

#: product modules over MAX_LINES, each to be split by issue #16's refactor; a module split
#: below the limit must leave this list (the test says so), and no new one may join it
STILL_TOO_LONG: set[str] = set()


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed (pip install -e '.[dev]')"
    return found


def test_ruff_finds_nothing_to_lint() -> None:
    r = _run(_tool("ruff"), "check", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_would_change_nothing() -> None:
    r = _run(_tool("ruff"), "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_import_contract_is_kept() -> None:
    r = _run(_tool("lint-imports"), "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def _product_modules() -> dict[str, int]:
    sizes = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/versions/" in rel:
                continue  # a migration is a record of what was done, not a module to shape
            sizes[rel] = len(path.read_text(encoding="utf-8").splitlines())
    return sizes


def test_no_product_module_is_over_500_lines_beyond_the_known_list() -> None:
    sizes = _product_modules()
    too_long = {rel for rel, n in sizes.items() if n > MAX_LINES}
    new = sorted(f"{rel} ({sizes[rel]} lines)" for rel in too_long - STILL_TOO_LONG)
    assert not new, f"over {MAX_LINES} lines: {new}; split them"
    done = sorted(STILL_TOO_LONG - too_long)
    assert not done, f"{done} no longer over {MAX_LINES} lines (or gone): take them off the list"


@pytest.mark.parametrize("contract", ["independence", "forbidden"])
def test_the_contract_would_catch_a_broken_rule(tmp_path: Path, contract: str) -> None:
    # the contract is only worth running if it fails on a violation: a copy of the product
    # packages with one forbidden import added must break it
    for top in PRODUCT:
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target, line = {
        "independence": (
            "services/care_plans/domain/screening.py",
            "import services.directory.api\n",
        ),
        "forbidden": ("services/referrals/domain.py", "import httpx\n"),
    }[contract]
    with (tmp_path / target).open("a", encoding="utf-8") as f:
        f.write(line)
    r = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(tmp_path)},
    )
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout, r.stdout

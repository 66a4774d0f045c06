"""The house rules of STYLE.md, enforced on the source tree: where SQL lives, who may import whom."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "indexer"
SQL = re.compile(
    r"\b(SELECT\s+[\w*(]|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+(TABLE|INDEX|VIEW)|TRUNCATE\s)"
)  # upper-case keywords, as every query here is written
# The pure core: plain data in, plain data out; no event loop, no database, no network.
PURE = [
    "decode/",
    "events.py",
    "batch.py",
    "projection.py",
    "projector/fold.py",
    "projector/draft.py",
    "projector/prorata.py",
    "epochs/split.py",
    "epochs/merkle.py",
    "epochs/windows.py",
    "points/loyalty.py",
]
IO_LIBRARIES = ("asyncio", "asyncpg", "aiohttp", "web3", "tronpy")


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def sql_strings(path: Path) -> list[str]:
    """String constants of `path` that read as SQL."""
    return [
        node.value[:60]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


def test_the_rules_see_sql_and_imports():
    """The checks themselves can fail: they find SQL and imports where there are some."""
    store = PACKAGE / "store" / "events.py"
    assert sql_strings(store) and "asyncpg" in imports(store)
    assert not SQL.search("select the contracts to follow")


@pytest.mark.parametrize("path", [p for p in modules() if not relative(p).startswith("store/")], ids=relative)
def test_no_sql_outside_store(path):
    assert sql_strings(path) == []


@pytest.mark.parametrize("path", [p for p in modules() if relative(p).startswith("chains/")], ids=relative)
def test_sources_do_not_import_the_store(path):
    """Sources read; the follow loop writes what they read."""
    assert not {m for m in imports(path) if m.startswith("indexer.store")}


@pytest.mark.parametrize("path", [p for p in modules() if relative(p).startswith("store/")], ids=relative)
def test_store_imports_neither_a_source_nor_the_projector(path):
    assert not {m for m in imports(path) if m.startswith(("indexer.chains", "indexer.projector"))}


@pytest.mark.parametrize("path", [p for p in modules() if relative(p).startswith(tuple(PURE))], ids=relative)
def test_the_pure_core_does_no_io(path):
    io = {m for m in imports(path) if m.split(".")[0] in IO_LIBRARIES}
    indexer_io = {m for m in imports(path) if m.startswith(("indexer.store", "indexer.chains"))}
    assert not io and not indexer_io


def test_every_pure_core_entry_exists():
    for entry in PURE:
        assert (PACKAGE / entry).exists(), entry


def test_loading_the_sources_loads_no_store():
    """Not even through another module: a source cannot reach the database."""
    import subprocess
    import sys

    probe = (
        "import sys, indexer.chains.evm, indexer.chains.tron, indexer.chains.social, indexer.chains.variants; "
        "print(sorted(m for m in sys.modules if m.startswith('indexer.store')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"

"""Versioned schema migrations: numbered SQL files applied in order, each in its own transaction.

`migrations/NNNN_name.sql` run in the order of their numbers under a session advisory lock
(a second process waits, then finds nothing left to do), each in one transaction with its row
in `schema_migrations`, so a migration that fails leaves the database as it was.
`0001_baseline.sql` is the schema of release 47213ee: a database that release created (its
tables, no version table) records the baseline as applied without running it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from indexer.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6B6C79_4D49  # advisory lock key: one process migrates at a time
FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
BASELINE_VERSION = 1  # the schema of release 47213ee, the oldest that upgrades in place

_VERSION_TABLE = """CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"

log = structlog.get_logger(__name__)


class MigrationError(DatabaseError):
    """A schema migration failed or does not fit this database; nothing was changed: fix the named cause and retry."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # the file name, e.g. 0002_pending_withdrawal_token_id.sql
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered by version (unique)."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_lower_case_words.sql")
        found.append(Migration(int(match[1]), path.name, path.read_text()))
    found.sort(key=lambda m: m.version)
    for first, second in zip(found, found[1:], strict=False):
        if first.version == second.version:
            raise MigrationError(f"migrations {first.name} and {second.name} have the same number")
    return found


async def migrate(
    database: str | asyncpg.Pool | asyncpg.Connection, *, dry_run: bool = False, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply every migration the database lacks; the names applied (with `dry_run`: that would be, changing nothing)."""
    migrations = load_migrations(directory)
    async with _connection(database) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            return await _migrate_locked(conn, migrations, dry_run)
        finally:
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def applied_migrations(database: str | asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """The names recorded in the version table, in order (none before the first migration)."""
    async with _connection(database) as conn:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return []
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")]


async def _migrate_locked(conn: asyncpg.Connection, migrations: list[Migration], dry_run: bool) -> list[str]:
    has_table = await conn.fetchval("SELECT to_regclass('schema_migrations')") is not None
    rows = await conn.fetch("SELECT version, name FROM schema_migrations") if has_table else []
    applied: dict[int, str] = {r["version"]: r["name"] for r in rows}
    by_version = {m.version: m for m in migrations}
    for version, name in sorted(applied.items()):
        if version not in by_version or by_version[version].name != name:
            raise MigrationError(f"the database has migration {name}, unknown to this release: run a newer release")
    baseline = None if has_table else await _legacy_baseline(conn, by_version.get(BASELINE_VERSION))
    pending = [m for m in migrations if m.version not in applied and m is not baseline]
    if dry_run:
        return [m.name for m in pending]
    if not has_table and not pending:  # a 47213ee database already current: just record its baseline
        async with conn.transaction():
            await _bootstrap(conn, baseline)
    for migration in pending:
        try:
            async with conn.transaction():
                if not has_table:
                    await _bootstrap(conn, baseline)
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, migration.version, migration.name)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise MigrationError(f"migration {migration.name} failed: {reason}") from exc
        has_table = True
        log.info("migration_applied", migration=migration.name)
    return [m.name for m in pending]


async def _legacy_baseline(conn: asyncpg.Connection, baseline: Migration | None) -> Migration | None:
    """The baseline, when the database was created by release 47213ee (its tables but no version table)."""
    if baseline is None or await conn.fetchval("SELECT to_regclass('events')") is None:
        return None
    tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", baseline.sql)
    missing = [t for t in tables if await conn.fetchval("SELECT to_regclass($1)", t) is None]
    if missing:
        raise MigrationError(
            f"the database has no version table and lacks {', '.join(missing)}: "
            "it predates release 47213ee, the oldest that upgrades in place"
        )
    return baseline


async def _bootstrap(conn: asyncpg.Connection, baseline: Migration | None) -> None:
    """Create the version table (inside the caller's transaction); record a 47213ee database's baseline."""
    await conn.execute(_VERSION_TABLE)
    if baseline is not None:
        await conn.execute(_RECORD, baseline.version, baseline.name)
        log.info("migration_baseline_recorded", migration=baseline.name)


@contextlib.asynccontextmanager
async def _connection(database: str | asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(database, asyncpg.Pool):
        async with database.acquire() as conn:
            yield conn
    elif isinstance(database, str):
        conn = await asyncpg.connect(database, timeout=10)  # (the CLI and `run` pass a pool made by create_pool)
        try:
            yield conn
        finally:
            await conn.close()
    else:
        yield database

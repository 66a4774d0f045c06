"""Connecting to Postgres (a configured server or an embedded one) and bringing its schema up to date."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import asyncpg

from indexer.errors import DatabaseError
from indexer.redact import redact_dsn
from indexer.store.events import CREATE_STAGING
from indexer.store.migrate import migrate
from indexer.store.projections import STAGE_DDL, STAGE_TABLES

# The current schema, readable top to bottom (shipped in the package, a link to the top-level
# file); databases get it through the versioned migrations of indexer/store/migrations/.
SCHEMA_PATH = Path(__file__).parents[1] / "schema.sql"
EMBEDDED_DIR = Path(".indexer") / "pgdata"


def embedded_dsn(data_dir: Path = EMBEDDED_DIR) -> str:
    """Start (or reuse) the embedded Postgres under `data_dir` and return its DSN."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # pgserver's platformdirs warns without it
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DatabaseError("database.dsn is empty and the embedded Postgres (pgserver) is not installed") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(data_dir.resolve(), cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - pgserver raises plain exceptions with the reason
        raise DatabaseError(f"could not start the embedded Postgres under {data_dir}: {exc}") from exc
    return server.get_uri()


def with_database(dsn: str, name: str) -> str:
    """`dsn` with its database replaced by `name`."""
    scheme, rest = dsn.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


async def create_database(server_dsn: str, name: str, **settings: str) -> str:
    """A new database `name` on the server of `server_dsn`, with the schema and these settings; its DSN."""
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        for setting, value in settings.items():
            await admin.execute(f'ALTER DATABASE "{name}" SET {setting} = {value}')
    finally:
        await admin.close()
    pool = await create_pool(with_database(server_dsn, name), max_size=1)
    try:
        await apply_schema(pool)
    finally:
        await pool.close()
    return with_database(server_dsn, name)


async def drop_databases(server_dsn: str, prefix: str) -> None:
    """Drop every database whose name starts with `prefix`."""
    admin = await asyncpg.connect(server_dsn)
    try:
        for (name,) in await admin.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up (a pool's `init`): the temporary tables COPY writes events and projection rows into.

    Made once per connection, outside any transaction: made inside one that rolls back, they would be
    made again by the next write, at the cost of a catalog change.
    """
    await conn.execute(f"{CREATE_STAGING}; {STAGE_DDL}")


async def vacuum(conn: asyncpg.Connection) -> None:
    """Vacuum the database, the connection's temporary tables too (no transaction may be open).

    For the simulation: its many rolled-back transactions leave dead rows behind, which no autovacuum
    removes from temporary tables (nor from any table on a server whose autovacuum is off, as this
    machine's is).
    """
    await conn.execute("VACUUM")


async def empty_staging(conn: asyncpg.Connection, tables: Iterable[str]) -> None:
    """Empty staging `tables` of the connection, as a commit does (they are ON COMMIT DELETE ROWS).

    Only the simulation needs it: a whole schedule there is one transaction (rolled back at its end),
    in which each transaction of the code under test is a savepoint, whose release commits nothing.
    """
    staging = {"events_staging", *STAGE_TABLES}
    unknown = set(tables) - staging
    if unknown:
        raise ValueError(f"not a staging table: {', '.join(sorted(unknown))}")
    await conn.execute("; ".join(f"DELETE FROM {table}" for table in sorted(set(tables))))


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """A connection pool to `dsn`, with a clear error when the server is unreachable."""
    try:
        return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10, init=prepare_connection)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot connect to the database ({redact_dsn(dsn)}): {exc}") from exc


async def apply_schema(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations the database lacks (the names applied); safe to run from several processes at once."""
    return await migrate(pool)


READER_ROLE = "indexer_reader"  # schema.sql's read-only role: SELECT on the granted views, nothing else


async def _reader_session(conn: asyncpg.Connection) -> None:
    """Each new read connection acts as the read-only role (RESET ALL, run on release, keeps it)."""
    await conn.execute(f"SET ROLE {READER_ROLE}")


async def create_read_pool(
    dsn: str, *, max_size: int = 6, statement_timeout: float = 2.0, connect_timeout: float = 5.0
) -> asyncpg.Pool:
    """A small pool for read-only queries (the HTTP API): every connection runs `SET ROLE indexer_reader`
    and a `statement_timeout`; connections open on demand, so an unreachable server fails requests, not the start.
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        timeout=connect_timeout,
        init=_reader_session,
        server_settings={"statement_timeout": str(int(statement_timeout * 1000)), "application_name": "indexer-api"},
    )

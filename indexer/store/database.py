"""Connecting to Postgres (a configured server or an embedded one) and bringing its schema up to date."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from indexer.errors import DatabaseError
from indexer.redact import redact_dsn
from indexer.store.events import prepare_connection
from indexer.store.migrate import migrate

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

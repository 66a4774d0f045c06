"""Session-wide real parts: one Postgres database and one anvil with the contracts deployed.

Postgres: `INDEXER_TEST_DSN` if set; else the server on 127.0.0.1:5432 if it
answers; else an embedded server (pgserver) started for the session. Either
way a fresh database is created for the session and dropped after it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from indexer.store.database import create_database, create_pool, drop_databases

ROOT = Path(__file__).resolve().parents[1]
TABLES = (
    "events",
    "chain_cursors",
    "recent_blocks",
    "pool_names",
    "reorgs",
    "assets",
    "validator_amounts",
    "pool_amounts",
    "position_buckets",
    "social_delegations",
    "lst_balances",
    "lst_tokens",
    "pending_withdrawals",
    "projector_cursor",
    "projector_state",
    "chain_contracts",
    "chain_health",
    "epoch_rewards",
    "epochs",
    "epoch_allocations",
    "loyalty_activity",
    "asset_prices",
    "staker_points",
)


def _local_server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A DSN of a Postgres server with rights to create databases."""
    if os.environ.get("INDEXER_TEST_DSN"):
        yield os.environ["INDEXER_TEST_DSN"]
    elif _local_server_answers():
        yield os.environ.get("INDEXER_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    else:
        import pgserver

        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        data = Path(tempfile.mkdtemp(prefix="indexer-test-pg-"))
        server = pgserver.get_server(data, cleanup_mode="delete")
        yield server.get_uri()


@pytest.fixture(scope="session")
async def database_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A fresh database for this test session, with schema.sql applied."""
    name = f"indexer_test_{uuid.uuid4().hex[:10]}"
    yield await create_database(server_dsn, name)
    await drop_databases(server_dsn, name)


@pytest.fixture
async def db(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session database, emptied before the test."""
    pool = await create_pool(database_dsn, max_size=10)
    await pool.execute(f"TRUNCATE {', '.join(TABLES)}")
    yield pool
    await pool.close()

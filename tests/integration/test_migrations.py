"""Versioned schema migrations on real Postgres: from empty, from a 47213ee database, concurrently, and failing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from indexer.store.database import with_database
from indexer.store.migrate import MIGRATIONS_DIR, MigrationError, applied_migrations, load_migrations, migrate
from indexer.store.projections import load_state
from tests.conftest import ROOT
from tests.integration.conftest import INDEXER, write_config

FIXTURE_47213EE = ROOT / "tests" / "fixtures" / "schema_47213ee.sql"
ALL = [m.name for m in load_migrations()]
MakeDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def new_database(server_dsn: str) -> AsyncIterator[MakeDatabase]:
    """Make empty throwaway databases (DSNs); they are dropped after the test."""
    names: list[str] = []

    async def make() -> str:
        name = f"indexer_migrations_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(server_dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        names.append(name)
        return with_database(server_dsn, name)

    yield make
    admin = await asyncpg.connect(server_dsn)
    for name in names:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def execute(dsn: str, sql: str, *args) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def with_connection(dsn: str, read: Callable[[asyncpg.Connection], Awaitable]) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await read(conn)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args) -> list[tuple]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INDEXER, "--config", str(config), *args], capture_output=True, text=True, timeout=120)


def feed_config(tmp_path: Path, dsn: str) -> Path:
    """A chains.yaml on `dsn` whose one chain is a (file) feed: enough for `migrate` and to reach the database."""
    feed = tmp_path / "feed.jsonl"
    feed.touch()
    return write_config(tmp_path / "chains.yaml", dsn, [{"name": "feed", "kind": "social", "url": str(feed)}])


# What a schema is made of, read from the catalog (the version table left out).
CATALOG = {
    "relations": """SELECT c.relname, c.relkind, c.reloptions::text, c.relacl::text FROM pg_class c
                     WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT LIKE 'schema_migrations%'
                     ORDER BY 1""",
    "columns": """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                   WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
                     AND c.relname NOT LIKE 'schema_migrations%'
                   ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE connamespace = 'public'::regnamespace
                         AND conrelid::regclass::text <> 'schema_migrations' ORDER BY 1, 2""",
    "indexes": """SELECT indexname, indexdef FROM pg_indexes
                   WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY 1""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "triggers": """SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
                    AND tgrelid::regclass::text NOT LIKE 'pg_%' ORDER BY 1""",
    "functions": """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
                     WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "schema": "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'",
}


async def catalog(dsn: str) -> dict[str, list[tuple]]:
    return {part: await fetch(dsn, sql) for part, sql in CATALOG.items()}


def schema_dump(dsn: str) -> str:
    """`pg_dump --schema-only` without the version table (and without pg_dump's per-run \\restrict keys)."""
    result = subprocess.run(
        ["pg_dump", "--schema-only", "--exclude-table=schema_migrations", dsn],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.skip(f"pg_dump cannot dump this server: {result.stderr.strip()}")
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def test_the_baseline_is_the_schema_of_release_47213ee():
    assert (MIGRATIONS_DIR / "0001_baseline.sql").read_bytes() == FIXTURE_47213EE.read_bytes()
    assert ALL[0] == "0001_baseline.sql"
    assert [m.version for m in load_migrations()] == list(range(1, len(ALL) + 1))


async def test_migrating_an_empty_database_gives_the_schema_of_schema_sql(new_database):
    migrated, described = await new_database(), await new_database()
    assert await migrate(migrated) == ALL
    await execute(described, (ROOT / "schema.sql").read_text())
    assert await catalog(migrated) == await catalog(described)
    assert await applied_migrations(migrated) == ALL


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
async def test_migrated_and_schema_sql_databases_dump_the_same(new_database):
    migrated, described = await new_database(), await new_database()
    await migrate(migrated)
    await execute(described, (ROOT / "schema.sql").read_text())
    dumped = schema_dump(migrated)
    assert "CREATE TABLE public.events" in dumped and "fillfactor" in dumped
    assert dumped == schema_dump(described)


async def test_cli_migrate_on_an_up_to_date_database_applies_nothing(new_database, tmp_path):
    dsn = await new_database()
    await migrate(dsn)
    for args in ([], ["--dry-run"]):
        result = run_cli(feed_config(tmp_path, dsn), "migrate", *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"migrate: up to date ({len(ALL)} migrations applied)\n"
    assert await applied_migrations(dsn) == ALL


async def test_cli_migrate_dry_run_on_an_empty_database_lists_all_and_creates_nothing(new_database, tmp_path):
    dsn = await new_database()
    result = run_cli(feed_config(tmp_path, dsn), "migrate", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"migrate: would apply {name}" for name in ALL]
    assert await fetch(dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace") == []
    applied = run_cli(feed_config(tmp_path, dsn), "migrate")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [f"migrate: applied {name}" for name in ALL]


# Rows written with the 47213ee schema: events of several types, a cursor, pending withdrawals and a closed epoch.
OLD_ROWS = """
INSERT INTO events (chain, chain_id, contract, contract_kind, contract_version, block_number, block_hash, block_time,
                    tx_hash, log_index, event_type, staker, counterparty, pool, pool_hash, amount, token_id,
                    unlock_time, asset) VALUES
  ('local', 31337, '0xc1', 'native', 2, 10, '0xb10', '2026-01-01 00:00:10+00', '0xt1', 0, 'stake', '0xs1', NULL,
   'validator-one', NULL, 1000000000000000000000, NULL, NULL, 'ETH'),
  ('local', 31337, '0xc1', 'native', 2, 10, '0xb10', '2026-01-01 00:00:10+00', '0xt1', 1, 'transfer', '0x00',
   '0xs1', NULL, NULL, 1000000000000000000000, NULL, NULL, 'ETH'),
  ('local', 31337, '0xc1', 'native', 2, 12, '0xb12', '2026-01-01 00:00:30+00', '0xt2', 0, 'unstake_request', '0xs1',
   NULL, 'validator-one', NULL, 400000000000000000000, NULL, '2026-01-04 00:00:30+00', 'ETH'),
  ('local', 31337, '0xc2', 'erc721', 2, 13, '0xb13', '2026-01-01 00:00:40+00', '0xt3', 2, 'stake', '0xs2', NULL,
   NULL, '0xhash', 1, 115792089237316195423570985008687907853269984665640564039457584007913129639935, NULL, 'NFT'),
  ('feed', 0, 'feed', 'social', 1, 0, '', '2026-01-01 00:01:00+00', '0xsig', 0, 'social_delegate', '0xs3', NULL,
   'validator-one', NULL, 250, NULL, NULL, 'SOCIAL');
INSERT INTO chain_cursors (chain, chain_id, block_number, block_hash, block_time, head_block, confirmed_block,
                           updated_at)
VALUES ('local', 31337, 13, '0xb13', '2026-01-01 00:00:40+00', 15, 13, '2026-01-01 00:02:00+00');
INSERT INTO pending_withdrawals (chain, contract, staker, position, amount, unlock_time) VALUES
  ('local', '0xc1', '0xs1', 0, 400000000000000000000, '2026-01-04 00:00:30+00'),
  ('local', '0xc1', '0xs1', 1, 7, '2026-01-05 00:00:00+00');
INSERT INTO epochs (epoch, start_time, end_time) VALUES (0, '2026-01-01', '2026-01-02');
INSERT INTO epoch_rewards (epoch, validator, asset, amount) VALUES (0, 'validator-one', 'KLY', 3000);
INSERT INTO epoch_allocations (epoch, validator, staker, asset, kind, amount) VALUES
  (0, 'validator-one', 'validator-one', 'KLY', 'commission', 300),
  (0, 'validator-one', '0xs1', 'KLY', 'stake', 2025),
  (0, 'validator-one', '0xs2', 'KLY', 'stake', 675);
INSERT INTO positions (staker, validator, asset, amount) VALUES
  ('0xs1', 'validator-one', 'ETH', 600000000000000000000), ('0xs2', 'validator-one', 'ETH', 1),
  ('a,b', 'validator-one', 'ETH', 2), ('NULL', 'validator-one', 'ETH', 3), ('"q" \\', 'validator-one', 'ETH', 4),
  ('0xs2', 'validator-two', 'NFT', 115792089237316195423570985008687907853269984665640564039457584007913129639935);
UPDATE epochs SET closed_at = '2026-01-02 00:10:00+00', total = 3000,
                  root = '0x5d3e1c3f1b4a2e9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b' WHERE epoch = 0;
"""
KEPT = {  # each table's rows as text, in the columns of the 47213ee schema
    "positions": "SELECT (staker, validator, asset, amount)::text FROM positions ORDER BY 1",
    "events": "SELECT t::text FROM events t ORDER BY 1",
    "chain_cursors": "SELECT t::text FROM chain_cursors t ORDER BY 1",
    "epochs": "SELECT t::text FROM epochs t ORDER BY 1",
    "epoch_rewards": "SELECT t::text FROM epoch_rewards t ORDER BY 1",
    "epoch_allocations": "SELECT t::text FROM epoch_allocations t ORDER BY 1",
    "pending_withdrawals": """SELECT (chain, contract, staker, position, amount, unlock_time)::text
                                FROM pending_withdrawals ORDER BY 1""",
}


async def database_of_47213ee(new_database: MakeDatabase) -> str:
    """A database as release 47213ee made it (its schema.sql, no version table), with rows in it."""
    dsn = await new_database()
    await execute(dsn, FIXTURE_47213EE.read_text())
    await execute(dsn, OLD_ROWS)
    return dsn


async def kept_rows(dsn: str) -> dict[str, list[tuple]]:
    return {table: await fetch(dsn, sql) for table, sql in KEPT.items()}


async def test_a_47213ee_database_upgrades_in_place_keeping_its_log_and_closed_epochs(new_database):
    dsn = await database_of_47213ee(new_database)
    before = await kept_rows(dsn)
    assert len(before["events"]) == 5 and len(before["epoch_allocations"]) == 3 and len(before["positions"]) == 6

    assert await migrate(dsn, dry_run=True) == ALL[1:]
    assert await applied_migrations(dsn) == []  # the dry run changed nothing
    assert await migrate(dsn) == ALL[1:]  # the baseline is recorded, not run

    assert await kept_rows(dsn) == before  # positions: a view over the bucket rows (0006) with the same rows
    assert await applied_migrations(dsn) == ALL
    state = await with_connection(dsn, load_state)
    assert dict(state.positions[("validator-one", "ETH")]) == {
        "0xs1": 600 * 10**18, "0xs2": 1, "a,b": 2, "NULL": 3, '"q" \\': 4
    }  # fmt: skip
    assert dict(state.positions[("validator-two", "NFT")]) == {"0xs2": 2**256 - 1}
    buckets = await fetch(dsn, "SELECT bits, bucket, stakers FROM position_buckets WHERE asset = 'ETH'")
    assert buckets == [(0, 0, sorted(state.positions[("validator-one", "ETH")]))]  # five positions: one row
    assert await fetch(dsn, "SELECT version, name FROM schema_migrations ORDER BY 1") == [
        (m.version, m.name) for m in load_migrations()
    ]
    assert await fetch(dsn, "SELECT staker, amount, token_id FROM v_pending_withdrawals ORDER BY amount") == [
        ("0xs1", 7, None),
        ("0xs1", 400 * 10**18, None),
    ]
    with pytest.raises(asyncpg.RaiseError, match="epoch 0 is closed and final"):
        await execute(dsn, "DELETE FROM epoch_allocations WHERE epoch = 0")
    assert await migrate(dsn) == []

    fresh = await new_database()
    await migrate(fresh)
    assert await catalog(dsn) == await catalog(fresh)


async def test_a_database_older_than_47213ee_is_refused_unchanged(new_database):
    dsn = await database_of_47213ee(new_database)
    await execute(dsn, "DROP TABLE staker_points CASCADE")
    before = await catalog(dsn)
    with pytest.raises(MigrationError, match="lacks staker_points: it predates release 47213ee"):
        await migrate(dsn)
    assert await catalog(dsn) == before


async def test_two_concurrent_migrations_one_applies_and_the_other_finds_nothing_to_do(new_database):
    dsn = await database_of_47213ee(new_database)
    first, second = await asyncio.gather(migrate(dsn), migrate(dsn))
    assert sorted([first, second]) == [[], ALL[1:]]
    assert await applied_migrations(dsn) == ALL


async def test_two_indexer_migrate_processes_at_once_one_applies_both_succeed(new_database, tmp_path):
    dsn = await database_of_47213ee(new_database)
    config = feed_config(tmp_path, dsn)
    processes = [
        subprocess.Popen([*INDEXER, "--config", str(config), "migrate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err.decode() for _, err in outputs]
    applied = "".join(f"migrate: applied {name}\n" for name in ALL[1:])
    up_to_date = f"migrate: up to date ({len(ALL)} migrations applied)\n"
    assert sorted(out.decode() for out, _ in outputs) == sorted([applied, up_to_date])
    assert await applied_migrations(dsn) == ALL


async def test_a_failing_migration_leaves_the_database_as_it_was_and_names_the_file(new_database, tmp_path):
    dsn = await new_database()
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x integer);\n")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half_done (x integer);\nSELECT 1 / 0;\n")
    with pytest.raises(MigrationError) as failed:
        await migrate(dsn, directory=tmp_path)
    assert str(failed.value) == "migration 0002_bad.sql failed: division by zero"
    tables = "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1"
    assert await fetch(dsn, tables) == [("good",), ("schema_migrations",)]
    assert await applied_migrations(dsn) == ["0001_good.sql"]
    with pytest.raises(MigrationError, match="0002_bad.sql"):  # again: same error, still nothing changed
        await migrate(dsn, directory=tmp_path)
    assert await applied_migrations(dsn) == ["0001_good.sql"]


async def test_a_failing_first_migration_leaves_an_empty_database_empty(new_database, tmp_path):
    dsn = await new_database()
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE half_done (x integer);\nSELECT nothing FROM half_done;\n")
    with pytest.raises(MigrationError, match=r'^migration 0001_bad.sql failed: column "nothing" does not exist$'):
        await migrate(dsn, directory=tmp_path)
    assert await fetch(dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace") == []


async def test_a_database_with_a_migration_this_release_lacks_is_refused(new_database, tmp_path):
    dsn = await new_database()
    await migrate(dsn)
    await execute(dsn, "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_the_future.sql')")
    with pytest.raises(MigrationError, match="9999_from_the_future.sql, unknown to this release"):
        await migrate(dsn)


async def test_a_failing_migration_is_one_line_on_stderr_for_migrate_and_run(new_database, server_dsn, tmp_path):
    """A login that does not own the tables cannot add the column: both commands fail with one line, exit 1."""
    dsn = await database_of_47213ee(new_database)
    role = f"indexer_migrations_{uuid.uuid4().hex[:8]}"
    database = dsn.rsplit("/", 1)[1]
    await execute(server_dsn, f'CREATE ROLE "{role}" LOGIN')
    try:
        await execute(dsn, f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        scheme, rest = dsn.split("://", 1)
        as_role = f"{scheme}://{role}@{rest.rsplit('@', 1)[-1]}"
        config = feed_config(tmp_path, as_role)
        for command in (["migrate"], ["run", "--once"]):
            result = run_cli(config, *command)
            assert result.returncode == 1, result.stderr
            errors = [line for line in result.stderr.splitlines() if line.startswith("indexer: error:")]
            assert errors == [
                "indexer: error: migration 0002_pending_withdrawal_token_id.sql failed: "
                "must be owner of table pending_withdrawals"
            ], result.stderr
            assert "Traceback" not in result.stderr
        assert await applied_migrations(dsn) == []  # no version table: nothing changed
    finally:
        await execute(server_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await execute(server_dsn, f'DROP ROLE IF EXISTS "{role}"')


async def test_two_services_starting_on_a_47213ee_database_upgrade_it_once_and_index_on(
    new_database, tmp_path, driver, deployment, anvil
):
    """Two `run --once` at once on an old database: one migrates, both run; the closed epoch's rows, root and
    proofs are byte-identical afterwards, and the chain is indexed on top of the old log."""
    from indexer.epochs import merkle
    from indexer.epochs.close import build_leaves, proof
    from tests.integration.conftest import chain_config

    dsn = await database_of_47213ee(new_database)
    stakers = [driver.accounts[1].lower(), driver.accounts[2].lower()]
    leaves = build_leaves(5, [(stakers[0], "ETH", 1234), (stakers[1], "ETH", 5678)])
    root = "0x" + merkle.root(merkle.build_tree(list(leaves))).hex()
    await execute(
        dsn,
        f"""INSERT INTO epochs (epoch, start_time, end_time) VALUES (5, '2026-01-06', '2026-01-07');
            INSERT INTO epoch_rewards (epoch, validator, asset, amount) VALUES (5, 'validator-one', 'ETH', 6912);
            INSERT INTO epoch_allocations (epoch, validator, staker, asset, kind, amount) VALUES
              (5, 'validator-one', '{stakers[0]}', 'ETH', 'stake', 1234),
              (5, 'validator-one', '{stakers[1]}', 'ETH', 'stake', 5678);
            UPDATE epochs SET closed_at = '2026-01-07 00:10:00+00', total = 6912, root = '{root}' WHERE epoch = 5;""",
    )

    async def proofs() -> list[dict]:
        conn = await asyncpg.connect(dsn)
        try:
            return [await proof(conn, 5, staker) for staker in stakers]
        finally:
            await conn.close()

    before_rows, before_proofs = await kept_rows(dsn), await proofs()
    assert all(p["root"] == root and p["leaves"] for p in before_proofs)
    receipt = await driver.stake("native_v1", driver.accounts[3], "0x" + "a1" * 20, 10**18)

    config = write_config(tmp_path / "chains.yaml", dsn, [chain_config(deployment, [anvil.url], name="upgraded")])
    processes = [
        await asyncio.create_subprocess_exec(
            *INDEXER, "--config", str(config), "run", "--once", stderr=asyncio.subprocess.PIPE
        )  # fmt: skip
        for _ in range(2)
    ]
    errors = [(await p.communicate())[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    assert await applied_migrations(dsn) == ALL
    assert await fetch(dsn, "SELECT count(*) FROM schema_migrations") == [(len(ALL),)]

    after_rows = {
        table: [r for r in rows if not r[0].startswith("(upgraded,")]
        for table, rows in (await kept_rows(dsn)).items()
        if table != "positions"  # a projection: the services project it from the log anew
    }
    del before_rows["positions"]
    assert after_rows == before_rows  # the old log, cursor and closed epochs, byte for byte
    assert await proofs() == before_proofs
    tx = receipt["transactionHash"].to_0x_hex()
    assert await fetch(dsn, "SELECT event_type FROM events WHERE chain = 'upgraded' AND tx_hash = $1 ORDER BY 1",
                       tx) == [("stake",), ("transfer",)]  # fmt: skip
    assert await fetch(dsn, "SELECT amount FROM v_validator_points WHERE validator = $1", "0x" + "a1" * 20) == [
        (10**18,)
    ]

"""The store against real Postgres: idempotent COPY inserts, the cursor guard, pool name resolution."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from types import MappingProxyType as Frozen

import pytest

from indexer.batch import Batch, BlockRef
from indexer.errors import FatalError, ReorgDetected
from indexer.events import Event, EventType
from indexer.projection import Changes, Pending, ProjectionState
from indexer.store.api import STAKER_POSITIONS
from indexer.store.cursors import load_cursor, load_pool_names
from indexer.store.events import write_batch
from indexer.store.position_buckets import array_literal, position_bits, position_bucket
from indexer.store.projections import copy_stages, load_state, replace_all, stage_changes, write_assets

MAX = 2**256 - 1


def event(log_index: int, **fields) -> Event:
    base = dict(
        chain="c1",
        chain_id=1,
        contract="0x" + "ab" * 20,
        contract_kind="native",
        contract_version=2,
        block_number=10,
        block_hash="0x" + "01" * 32,
        block_time=1_767_225_600,
        tx_hash="0x" + "02" * 32,
        log_index=log_index,
        event_type=EventType.STAKE,
        asset="ETH",
        staker="0x" + "11" * 20,
        amount=MAX,
    )
    return Event(**(base | fields))


def batch(first: int, last: int, events=(), names=None) -> Batch:
    ref = BlockRef(last, f"0x{last:064x}", f"0x{last - 1:064x}", 1_767_225_600 + last)
    return Batch("c1", first, ref, tuple(events), (), names or {})


async def write(conn, b: Batch) -> int:
    return await write_batch(conn, b, chain_id=1, head_block=100, confirmed_block=98, keep_blocks=64)


async def test_batch_lands_once_with_exact_uint256_and_cursor(db):
    events = [event(0, pool="validator-one", unlock_time=1_767_484_800), event(1, event_type=EventType.TRANSFER)]
    async with db.acquire() as conn:
        assert await write(conn, batch(5, 20, events)) == 2
    rows = await db.fetch(
        "SELECT log_index, amount, pool, extract(epoch FROM unlock_time)::bigint AS u FROM events ORDER BY log_index"
    )
    assert [(r["log_index"], int(r["amount"]), r["pool"]) for r in rows] == [(0, MAX, "validator-one"), (1, MAX, None)]
    assert rows[0]["u"] == 1_767_484_800
    cursor = await load_cursor(db, "c1")
    assert (cursor.number, cursor.hash, cursor.time) == (20, f"0x{20:064x}", 1_767_225_620)
    status = await db.fetchrow("SELECT * FROM v_indexer_status WHERE chain = 'c1'")
    assert (status["indexed_block"], status["head_block"], status["confirmed_block"], status["lag_blocks"]) == (
        20,
        100,
        98,
        80,
    )


async def test_a_batch_commits_without_waiting_for_the_wal_flush_and_only_it(db):
    async with db.acquire() as conn, conn.transaction():  # a savepoint for write_batch's own transaction
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await write(conn, batch(5, 20, [event(0)]))
        assert await conn.fetchval("SHOW synchronous_commit") == "off"  # set for the enclosing transaction
    async with db.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"  # and for no other


async def test_replaying_events_adds_nothing(db):
    async with db.acquire() as conn:
        await write(conn, batch(5, 20, [event(0)]))
        assert await write(conn, batch(21, 30, [event(0), event(1)])) == 1
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_a_log_answered_twice_in_one_batch_is_stored_once_with_the_batch(db):
    """The first try (a plain INSERT) fails on the repeated key; the batch is stored again skipping it."""
    async with db.acquire() as conn:
        await write(conn, batch(5, 20, [event(0)]))
        assert await write(conn, batch(21, 30, [event(1), event(1), event(2)], {"0xhash": "named"})) == 2
    assert [r["log_index"] for r in await db.fetch("SELECT log_index FROM events ORDER BY 1")] == [0, 1, 2]
    assert (await load_cursor(db, "c1")).number == 30
    assert await load_pool_names(db) == {"0xhash": "named"}  # the second try kept the whole batch


async def test_stored_events_and_a_moved_cursor_still_refuse_the_batch_and_write_nothing(db):
    async with db.acquire() as conn:
        await write(conn, batch(5, 20, [event(0)]))
        with pytest.raises(FatalError, match="no longer at block 29"):
            await write(conn, batch(30, 40, [event(0), event(1)]))
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    assert (await load_cursor(db, "c1")).number == 20


async def test_a_batch_whose_parent_is_not_the_cursor_block_is_a_reorg_and_writes_nothing(db):
    """The cursor's block was orphaned: the next range's first block names another parent."""
    async with db.acquire() as conn:
        await write(conn, batch(5, 20))
        cursor = await load_cursor(db, "c1")
        orphaned = Batch("c1", 21, BlockRef(23, "0x" + "23" * 32, "0x" + "22" * 32, 1_767_225_623), (event(0),), (),
                         {}, parent_hash="0x" + "99" * 32)  # fmt: skip
        with pytest.raises(ReorgDetected, match="block 21 does not follow the indexed block 20"):
            await write(conn, orphaned)
        linked = Batch("c1", 21, orphaned.last, (event(0),), (), {}, parent_hash=cursor.hash)
        assert await write(conn, linked) == 1
    assert (await load_cursor(db, "c1")).number == 23


async def test_cursor_moved_by_someone_else_is_fatal_and_writes_nothing(db):
    async with db.acquire() as conn:
        await write(conn, batch(5, 20))
        with pytest.raises(FatalError, match="no longer at block 29"):
            await write(conn, batch(30, 40, [event(0)]))
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert (await load_cursor(db, "c1")).number == 20


async def test_learnt_pool_name_resolves_waiting_events(db):
    waiting = event(0, pool=None, pool_hash="0xhash")
    async with db.acquire() as conn:
        await write(conn, batch(5, 20, [waiting]))
        assert await db.fetchval("SELECT unresolved_pools FROM v_indexer_status") == 1
        await write(conn, batch(21, 22, [], {"0xhash": "validator-two"}))
    assert await db.fetchval("SELECT pool FROM events") == "validator-two"
    assert await load_pool_names(db) == {"0xhash": "validator-two"}
    assert await db.fetchval("SELECT unresolved_pools FROM v_indexer_status") == 0


# stakers are free text too (a social feed's): in a bucket's text[] these must be quoted, or COPY-escaped
ODD_STAKERS = {'"quoted"': 1, "{brace}": 2, "a,b": 3, "NULL": 4, "null": 5, "": 6, " lead": 7, "back\\slash": 8,
               "tab\there": 9, "new\nline": 10, "\\N": 11, "ünï ✓": 12}  # fmt: skip


async def test_stakers_come_back_from_a_text_array_and_sql_buckets_them_as_python_does(db):
    """The array literals, and the SQL functions the migration and the staker lookup use, against the Python."""
    rng = random.Random(7)
    pieces = ["0x1f", "T9y", ",", "{", "}", '"', "\\", " ", "\t", "\n", "NULL", "null", "é", "✓", ""]
    lists = [sorted("".join(rng.choices(pieces, k=rng.randint(0, 4))) for _ in range(rng.randint(0, 6)))
             for _ in range(300)]  # fmt: skip
    lists += [sorted(ODD_STAKERS), [f"0x{i:040x}" for i in range(50)]]
    for values in lists:
        literal = array_literal(values)
        assert await db.fetchval("SELECT $1::text::text[]", literal) == values, literal
    stakers = sorted({s for values in lists for s in values})
    for bits in (0, 1, 7, 13, 16):
        in_sql = "SELECT array_agg(position_bucket(s, $2) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY u(s, i)"
        assert await db.fetchval(in_sql, stakers, bits) == [position_bucket(s, bits) for s in stakers]
    sizes = [*range(0, 70_000), 2**31, 2**62]
    in_sql = "SELECT array_agg(position_bits(n) ORDER BY i) FROM unnest($1::bigint[]) WITH ORDINALITY u(n, i)"
    assert await db.fetchval(in_sql, sizes) == [position_bits(n) for n in sizes]


async def test_a_stakers_positions_are_read_from_its_bucket_alone(db):
    stakers = [f"0x{i:040x}" for i in range(1, 30_001)]
    pools = {(f"validator-{v}", "ETH"): Frozen({s: 10**18 + i for i, s in enumerate(stakers[v::3])}) for v in range(3)}
    state = ProjectionState(
        validators=Frozen({pool: sum(held.values()) for pool, held in pools.items()}), positions=Frozen(pools)
    )
    async with db.acquire() as conn, conn.transaction():
        await replace_all(conn, state)
    await db.execute("ANALYZE position_buckets")
    staker = stakers[3]  # in validator-0 only
    everywhere = await db.fetch("SELECT validator, asset, amount::text, share::text FROM v_staker_positions "
                                "WHERE staker = $1 ORDER BY validator, asset", staker)  # fmt: skip
    assert [tuple(r) for r in await db.fetch(STAKER_POSITIONS, staker)] == [tuple(r) for r in everywhere]
    assert [r[0] for r in everywhere] == ["validator-0"]

    plan = json.loads(await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {STAKER_POSITIONS}", staker))[0]["Plan"]
    scans = [node for node in _plan_nodes(plan) if node.get("Relation Name") == "position_buckets"]
    assert len(scans) == 1 and "bucket" in json.dumps(scans[0])
    read = scans[0]["Actual Rows"] + scans[0].get("Rows Removed by Filter", 0)
    assert read <= 3 * 11  # a pool's candidates (bits 0 to 10: its 10,000 stakers in 1,024 rows), not all 3,072


def _plan_nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


async def test_projection_rows_survive_copy_text_whatever_the_names(db):
    """Pool names are free text: tabs, newlines, backslashes and `\\N` itself must come back as written."""
    names = ["tab\there", "line\nbreak", "back\\slash", "\\N", "cr\rlf", "ünïcode ✓", "plain"]
    state = ProjectionState(
        validators=Frozen({(name, "ETH"): MAX - i for i, name in enumerate(names)}),
        pools=Frozen({("c1", "0xc", name): i + 1 for i, name in enumerate(names)}),
        positions=Frozen({(name, "ETH"): Frozen({"0xa": MAX - i, **ODD_STAKERS}) for i, name in enumerate(names)}),
        balances=Frozen({("c1", "0xc", "0xa"): MAX}),
        token_owners=Frozen({("c1", "0xn", MAX): "0xa"}),
        token_pools=Frozen({("c1", "0xn", MAX): names[0]}),
        withdrawals=Frozen({("c1", "0xc", "0xa"): (Pending(5, 1_800_000_000), Pending(MAX, 1_900_000_000))}),
        checkpoints=Frozen({"c1": (1_767_225_600, "c1", 10, 3, "0x02")}),
    )
    async with db.acquire() as conn, conn.transaction():
        await replace_all(conn, state)
    assert await load_state(db) == state

    # one write of every kind: update, insert, delete, a multi-row key rewritten
    after = ProjectionState(
        validators=Frozen({**{k: v for k, v in state.validators.items() if k[0] != "plain"}, ("new\tone", "ETH"): 1}),
        pools=Frozen({k: v + 1 for k, v in state.pools.items()}),
        positions=Frozen(
            {
                **{k: v for k, v in state.positions.items() if k[0] != "plain"},
                ("tab\there", "ETH"): Frozen({**{s: n + 1 for s, n in ODD_STAKERS.items() if s != "NULL"}, "0xb": 1}),
            }
        ),
        balances=Frozen({}),
        token_owners=Frozen({("c1", "0xn", MAX): "0xb"}),
        token_pools=Frozen({}),
        withdrawals=Frozen({("c1", "0xc", "0xa"): (Pending(MAX, 1_900_000_000),)}),
        checkpoints=Frozen({"c1": (1_767_225_700, "c1", 11, 0, "0x03")}),
    )
    changes = Changes(
        validators=frozenset(state.validators) | frozenset(after.validators),
        pools=frozenset(after.pools),
        positions=frozenset(
            {("0xa", "plain", "ETH"), ("0xa", "tab\there", "ETH"), ("0xb", "tab\there", "ETH")}
            | {(s, pool, "ETH") for s in ODD_STAKERS for pool in ("plain", "tab\there")}
        ),
        balances=frozenset(state.balances),
        tokens=frozenset(state.token_owners),
        withdrawals=frozenset(state.withdrawals),
        checkpoints=frozenset({"c1"}),
    )
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(await copy_stages(conn, stage_changes(state, after, changes)))
    assert await load_state(db) == after
    assert await db.fetchval("SELECT count(*) FROM pending_withdrawals") == 1


async def test_validator_points_view_is_whole_tokens_times_weight(db):
    """v_validator_points over what the projector writes: amount / 10**decimals x the asset's weight.

    Postgres's numeric division keeps 16 decimals here (the scale of 10::numeric ^ decimals), so an
    18-decimal amount with more significant digits than that is rounded at the 16th decimal.
    """
    state = ProjectionState(
        validators=Frozen({("0xp", "ETH"): 1_500_000_000_000_000_000, ("0xq", "TKN"): MAX, ("0xp", "TRX"): 2_500_000}),
        positions=Frozen(
            {
                ("0xp", "ETH"): Frozen({"0xa": 1_500_000_000_000_000_000}),
                ("0xq", "TKN"): Frozen({"0xa": MAX}),
                ("0xp", "TRX"): Frozen({"0xb": 2_500_000}),
            }
        ),
    )
    weights = {"ETH": (18, Decimal("2.5")), "TKN": (18, Decimal(1)), "TRX": (6, Decimal("0.1"))}
    async with db.acquire() as conn, conn.transaction():
        await write_assets(conn, weights)
        await replace_all(conn, state)
    rows = await db.fetch("SELECT validator, asset, amount, points FROM v_validator_points")
    assert {(r["validator"], r["asset"]): (int(r["amount"]), r["points"]) for r in rows} == {
        ("0xp", "ETH"): (1_500_000_000_000_000_000, Decimal("3.75")),
        ("0xq", "TKN"): (MAX, Decimal("115792089237316195423570985008687907853269984665640564039457.5840079131296399")),
        ("0xp", "TRX"): (2_500_000, Decimal("0.25")),
    }


async def test_readers_keep_reading_the_old_rows_while_a_reproject_replaces_them(db):
    """A reproject's replace must not lock the views' readers out: they see the old rows until it commits."""
    old = ProjectionState(
        validators=Frozen({("0xp", "ETH"): 5}), positions=Frozen({("0xp", "ETH"): Frozen({"0xa": 5})})
    )
    new = ProjectionState(
        validators=Frozen({("0xp", "ETH"): 7}), positions=Frozen({("0xp", "ETH"): Frozen({"0xb": 7})})
    )
    async with db.acquire() as conn, conn.transaction():
        await write_assets(conn, {"ETH": (18, Decimal(1))})
        await replace_all(conn, old)
    async with db.acquire() as writer, writer.transaction():
        await replace_all(writer, new)
        async with db.acquire() as reader:
            await reader.execute("SET lock_timeout = '2s'")
            seen = await reader.fetch("SELECT staker, amount FROM v_staker_positions")
            points = await reader.fetchval("SELECT amount FROM v_validator_points")
        assert [(r["staker"], int(r["amount"])) for r in seen] == [("0xa", 5)]
        assert int(points) == 5
    assert await load_state(db) == new

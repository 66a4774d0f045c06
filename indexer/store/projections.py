"""Projection tables: load the folded state, write what a fold changed, read the events still to fold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import asyncpg

from indexer.events import Event, EventType
from indexer.projector.state import Changes, Pending, ProjectionState

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    """How one projection maps to a table: its key columns, value columns, and rows for changed keys."""

    name: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    changed: Callable[[Changes], Iterable[tuple]]
    rows: Callable[[ProjectionState, Iterable[tuple]], list[Row]]  # rows of the keys still present
    all_keys: Callable[[ProjectionState], Iterable[tuple]]
    one_row_per_key: bool = True  # then changed rows are upserted, only vanished keys deleted


def _plain(attribute: str) -> Callable[[ProjectionState, Iterable[tuple]], list[Row]]:
    def rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
        mapping = getattr(state, attribute)
        return [(*key, mapping[key]) for key in keys if key in mapping]

    return rows


def _position_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    rows = []
    for staker, validator, asset in keys:
        amount = state.positions.get((validator, asset), {}).get(staker)
        if amount:
            rows.append((staker, validator, asset, amount))
    return rows


def _token_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    return [
        (chain, contract, token_id, state.token_owners.get(key), state.token_pools.get(key))
        for key in keys
        for chain, contract, token_id in [key]
        if key in state.token_owners or key in state.token_pools
    ]


def _withdrawal_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    return [
        (*key, position, p.amount, p.unlock_time)
        for key in keys
        for position, p in enumerate(state.withdrawals.get(key, ()))
    ]


def _cursor_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    return [(chain, *state.watermarks[chain]) for (chain,) in keys if chain in state.watermarks]


TABLES = (
    Table("validator_amounts", ("validator", "asset"), ("amount",), lambda c: c.validators, _plain("validators"),
          lambda s: s.validators.keys()),
    Table("pool_amounts", ("chain", "contract", "pool"), ("amount",), lambda c: c.pools, _plain("pools"),
          lambda s: s.pools.keys()),
    Table("positions", ("staker", "validator", "asset"), ("amount",), lambda c: c.positions, _position_rows,
          lambda s: (key for key, _ in s.iter_positions())),
    Table("social_delegations", ("feed", "staker", "validator"), ("points",), lambda c: c.delegations,
          _plain("delegations"), lambda s: s.delegations.keys()),
    Table("lst_balances", ("chain", "contract", "holder"), ("balance",), lambda c: c.balances, _plain("balances"),
          lambda s: s.balances.keys()),
    Table("lst_tokens", ("chain", "contract", "token_id"), ("owner", "pool"), lambda c: c.tokens, _token_rows,
          lambda s: s.token_owners.keys() | s.token_pools.keys()),
    Table("pending_withdrawals", ("chain", "contract", "staker"), ("position", "amount", "unlock_time"),
          lambda c: c.withdrawals, _withdrawal_rows, lambda s: s.withdrawals.keys(), one_row_per_key=False),
    Table("projector_cursor", ("chain",), ("block_time", "block_number", "log_index", "tx_hash"),
          lambda c: ((chain,) for chain in c.watermarks), _cursor_rows, lambda s: ((c,) for c in s.watermarks)),
)  # fmt: skip
_KEY_TYPES = {"token_id": "numeric"}


# Rows are staged as text and cast by Postgres: asyncpg's binary NUMERIC encoder is several times slower.
_CASTS = {
    "amount": "{}::numeric", "points": "{}::numeric", "balance": "{}::numeric", "token_id": "{}::numeric",
    "position": "{}::integer", "block_time": "{}::bigint", "block_number": "{}::bigint", "log_index": "{}::integer",
    "unlock_time": "to_timestamp({}::bigint)",
}  # fmt: skip


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def _insert(conn: asyncpg.Connection, table: Table, rows: list[Row], *, upsert: bool = False) -> None:
    columns = [*table.keys, *table.values]
    stage = f"stage_{table.name}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({', '.join(f'{c} text' for c in columns)}) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table(stage, records=[tuple(map(_text, row)) for row in rows], columns=columns)
    selected = ", ".join(_CASTS.get(c, "{}").format(c) for c in columns)
    conflict = ""
    if upsert:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.values)
        conflict = f" ON CONFLICT ({', '.join(table.keys)}) DO UPDATE SET {updates}"
    await conn.execute(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {selected} FROM {stage}{conflict}; TRUNCATE {stage}"
    )


async def _delete(conn: asyncpg.Connection, table: Table, keys: list[tuple]) -> None:
    columns = list(zip(*keys, strict=True))
    condition = " AND ".join(f"t.{name} = k.{name}" for name in table.keys)
    unnest = ", ".join(f"${i + 1}::{_KEY_TYPES.get(name, 'text')}[]" for i, name in enumerate(table.keys))
    await conn.execute(
        f"DELETE FROM {table.name} t USING unnest({unnest}) AS k({', '.join(table.keys)}) WHERE {condition}",
        *[list(column) for column in columns],
    )


async def save_changes(conn: asyncpg.Connection, state: ProjectionState, changes: Changes) -> None:
    """Write the rows of every changed key and delete the rows of keys gone from the state; caller's transaction."""
    for table in TABLES:
        keys = list(table.changed(changes))
        if not keys:
            continue
        rows = table.rows(state, keys)
        if table.one_row_per_key:
            present = {row[: len(table.keys)] for row in rows}
            gone = [key for key in keys if key not in present]
            if gone:
                await _delete(conn, table, gone)
            if rows:
                await _insert(conn, table, rows, upsert=True)
        else:
            await _delete(conn, table, keys)
            if rows:
                await _insert(conn, table, rows)


async def replace_all(conn: asyncpg.Connection, state: ProjectionState) -> None:
    """Replace every projection table with the state (reproject); caller's transaction."""
    for table in TABLES:
        await conn.execute(f"TRUNCATE {table.name}")
        rows = table.rows(state, table.all_keys(state))
        if rows:
            await _insert(conn, table, rows)


async def load_state(conn: asyncpg.Connection | asyncpg.Pool) -> ProjectionState:
    """The projector's state as its tables hold it."""
    positions: dict[tuple[str, str], dict[str, int]] = {}
    for r in await conn.fetch("SELECT staker, validator, asset, amount FROM positions"):
        positions.setdefault((r["validator"], r["asset"]), {})[r["staker"]] = int(r["amount"])
    withdrawals: dict[tuple[str, str, str], list[Pending]] = {}
    for r in await conn.fetch(
        """SELECT chain, contract, staker, amount, extract(epoch FROM unlock_time)::bigint AS unlock
             FROM pending_withdrawals ORDER BY chain, contract, staker, position"""
    ):
        withdrawals.setdefault((r["chain"], r["contract"], r["staker"]), []).append(
            Pending(int(r["amount"]), r["unlock"])
        )
    tokens = await conn.fetch("SELECT chain, contract, token_id, owner, pool FROM lst_tokens")

    async def keyed(sql: str) -> Mapping:
        return MappingProxyType({tuple(r)[:-1]: _int(tuple(r)[-1]) for r in await conn.fetch(sql)})

    return ProjectionState(
        validators=await keyed("SELECT validator, asset, amount FROM validator_amounts"),
        pools=await keyed("SELECT chain, contract, pool, amount FROM pool_amounts"),
        positions=MappingProxyType({k: MappingProxyType(v) for k, v in positions.items()}),
        delegations=await keyed("SELECT feed, staker, validator, points FROM social_delegations"),
        balances=await keyed("SELECT chain, contract, holder, balance FROM lst_balances"),
        token_owners=MappingProxyType(
            {(r["chain"], r["contract"], int(r["token_id"])): r["owner"] for r in tokens if r["owner"] is not None}
        ),
        token_pools=MappingProxyType(
            {(r["chain"], r["contract"], int(r["token_id"])): r["pool"] for r in tokens if r["pool"] is not None}
        ),
        withdrawals=MappingProxyType({k: tuple(v) for k, v in withdrawals.items()}),
        watermarks=MappingProxyType(
            {
                r["chain"]: (r["block_time"], r["block_number"], r["log_index"], r["tx_hash"])
                for r in await conn.fetch("SELECT * FROM projector_cursor")
            }
        ),
    )


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else value


_EVENT_SELECT = """
SELECT e.chain, e.chain_id, e.contract, e.contract_kind, e.contract_version, e.block_number, e.block_hash,
       extract(epoch FROM e.block_time)::bigint, e.tx_hash, e.log_index, e.event_type, e.asset, e.staker,
       e.counterparty, e.pool, e.pool_hash, e.amount::text, e.token_id::text,
       extract(epoch FROM e.unlock_time)::bigint
  FROM events e
 WHERE e.chain = $1 AND (e.block_number, e.log_index, e.tx_hash) > ($2, $3, $7) AND e.block_number <= $4
   AND e.block_time <= to_timestamp($5)
 ORDER BY e.block_number, e.log_index, e.tx_hash
 LIMIT $6
"""


async def read_events(
    conn: asyncpg.Connection | asyncpg.Pool,
    chain: str,
    after: tuple[int, int, str],
    up_to_block: int,
    up_to_time: int,
    limit: int,
) -> list[Event]:
    """The chain's next events after `after` = (block, log index, tx hash), in chain order, up to block and time."""
    rows = await conn.fetch(_EVENT_SELECT, chain, after[0], after[1], up_to_block, up_to_time, limit, after[2])
    return [
        Event(*r[:10], EventType(r[10]), *r[11:16], None if r[16] is None else int(r[16]),
              None if r[17] is None else int(r[17]), r[18])
        for r in rows
    ]  # fmt: skip


async def write_assets(conn: asyncpg.Connection | asyncpg.Pool, assets: Mapping[str, tuple[int, Decimal]]) -> None:
    """Record each asset's decimals and weight (from the config) for the points views."""
    await conn.execute(
        """INSERT INTO assets (asset, decimals, weight) SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[])
           ON CONFLICT (asset) DO UPDATE SET decimals = EXCLUDED.decimals, weight = EXCLUDED.weight""",
        list(assets),
        [d for d, _ in assets.values()],
        [w for _, w in assets.values()],
    )

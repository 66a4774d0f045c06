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
    """How one projection maps to a table: its key and value columns, the keys a fold changed, their rows."""

    name: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    changed: Callable[[Changes], Iterable[tuple]]
    rows: Callable[[ProjectionState, Iterable[tuple]], list[Row]]  # rows of the keys still present
    all_keys: Callable[[ProjectionState], Iterable[tuple]]
    holds: Callable[[ProjectionState, tuple], bool] | None = None  # whether a key has its one row (None: many rows)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.values)


def _plain(name: str, keys: tuple[str, ...], value: str, attribute: str) -> Table:
    """A table of one mapping of the state, named alike in the state and in Changes: key -> value."""

    def rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
        mapping = getattr(state, attribute)
        return [(*key, mapping[key]) for key in keys if key in mapping]

    return Table(
        name, keys, (value,), lambda c: getattr(c, attribute), rows, lambda s: getattr(s, attribute).keys(),
        lambda s, key: key in getattr(s, attribute),
    )  # fmt: skip


_NONE: Mapping = MappingProxyType({})


def _position_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    positions = state.positions
    rows = []
    for staker, validator, asset in keys:
        amount = positions.get((validator, asset), _NONE).get(staker)
        if amount:
            rows.append((staker, validator, asset, amount))
    return rows


def _holds_position(state: ProjectionState, key: tuple) -> bool:
    staker, validator, asset = key
    return staker in state.positions.get((validator, asset), _NONE)


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
    _plain("validator_amounts", ("validator", "asset"), "amount", "validators"),
    _plain("pool_amounts", ("chain", "contract", "pool"), "amount", "pools"),
    Table("positions", ("staker", "validator", "asset"), ("amount",), lambda c: c.positions, _position_rows,
          lambda s: (key for key, _ in s.iter_positions()), _holds_position),
    _plain("social_delegations", ("feed", "staker", "validator"), "points", "delegations"),
    _plain("lst_balances", ("chain", "contract", "holder"), "balance", "balances"),
    Table("lst_tokens", ("chain", "contract", "token_id"), ("owner", "pool"), lambda c: c.tokens, _token_rows,
          lambda s: s.token_owners.keys() | s.token_pools.keys(),
          lambda s, key: key in s.token_owners or key in s.token_pools),
    Table("pending_withdrawals", ("chain", "contract", "staker"), ("position", "amount", "unlock_time"),
          lambda c: c.withdrawals, _withdrawal_rows, lambda s: s.withdrawals.keys()),
    Table("projector_cursor", ("chain",), ("block_time", "block_number", "log_index", "tx_hash"),
          lambda c: ((chain,) for chain in c.watermarks), _cursor_rows, lambda s: ((c,) for c in s.watermarks),
          lambda s, key: key[0] in s.watermarks),
)  # fmt: skip


# Rows travel as COPY text, joined here and parsed by Postgres (asyncpg's binary NUMERIC encoder is several
# times slower), into typed per-connection stage tables, each row marked: (i)nsert, (u)pdate or (d)elete.
# Updates go through UPDATE ... FROM rather than INSERT ... ON CONFLICT: an update that fits its page
# (HOT, see the tables' fillfactor) touches no index, so it costs a fraction of a speculative insert.
_STAGE_TYPES = {
    "amount": "numeric", "points": "numeric", "balance": "numeric", "token_id": "numeric", "position": "integer",
    "block_time": "bigint", "block_number": "bigint", "log_index": "integer", "unlock_time": "bigint",
}  # fmt: skip
_CAST = {"unlock_time": "to_timestamp({})"}  # staged as unix seconds
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value: Any) -> str:
    """One value in COPY text format: NULL as \\N, the format's special characters escaped."""
    if value is None:
        return "\\N"
    if value.__class__ is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_ESCAPES)
        return value
    return str(value)


def _stage(table: Table) -> str:
    return f"stage_{table.name}"


def _staged(column: str, prefix: str = "") -> str:
    """A stage column as the table's type."""
    return _CAST.get(column, "{}").format(prefix + column)


_STAGE_DDL = "; ".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {_stage(t)} "
    f'({", ".join(c + " " + _STAGE_TYPES.get(c, "text") for c in t.columns)}, op "char" NOT NULL) '
    "ON COMMIT DELETE ROWS"
    for t in TABLES
)


def _apply_sql(table: Table, ops: set[str]) -> str:
    """The statements moving a table's staged rows into it, for the kinds of rows staged."""
    stage, columns = _stage(table), ", ".join(table.columns)
    matches = " AND ".join(f"t.{k} = s.{k}" for k in table.keys)
    insert = f"INSERT INTO {table.name} ({columns}) SELECT {', '.join(map(_staged, table.columns))}"
    statements = [f"ANALYZE {stage}"]  # its size, so that a few rows are joined by index, not by a full scan
    if table.holds is None:  # many rows a key: replace them all
        statements.append(f"DELETE FROM {table.name} t USING {stage} s WHERE {matches}")
        if ops - {"d"}:
            statements.append(f"{insert} FROM {stage} WHERE op <> 'd'")
        return "; ".join(statements)
    if "d" in ops:
        statements.append(f"DELETE FROM {table.name} t USING {stage} s WHERE {matches} AND s.op = 'd'")
    if "u" in ops:
        updates = ", ".join(f"{c} = {_staged(c, 's.')}" for c in table.values)
        statements.append(f"UPDATE {table.name} t SET {updates} FROM {stage} s WHERE {matches} AND s.op = 'u'")
    if "i" in ops:
        upsert = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.values)
        statements.append(
            f"{insert} FROM {stage} WHERE op = 'i' ON CONFLICT ({', '.join(table.keys)}) DO UPDATE SET {upsert}"
        )
    return "; ".join(statements)


async def _stage_rows(conn: asyncpg.Connection, table: Table, lines: list[str]) -> None:
    if lines:
        lines.append("")
        await conn.copy_to_table(  # a memoryview: asyncpg would take bytes for a file name
            _stage(table), source=memoryview("\n".join(lines).encode()), columns=[*table.columns, "op"], format="text"
        )


def _lines(rows: Iterable[Row], op: str) -> list[str]:
    return ["\t".join([*map(copy_field, row), op]) for row in rows]


async def stage_changes(
    conn: asyncpg.Connection, before: ProjectionState, after: ProjectionState, changes: Changes
) -> str:
    """Stage the rows the fold from `before` to `after` changed; returns the statement applying them.

    Run the statement in the same transaction; it may be left running on the server while the
    caller folds the next batch.
    """
    await conn.execute(_STAGE_DDL)
    statements = []
    for table in TABLES:
        keys = table.changed(changes)
        if not keys:
            continue
        width, blanks = len(table.keys), (None,) * len(table.values)
        rows = table.rows(after, keys)
        present = {row[:width] for row in rows}
        gone = [(*key, *blanks) for key in keys if key not in present]
        if table.holds is None:  # many rows a key: all replaced
            staged = {"i": rows, "d": gone}
        else:
            holds = table.holds
            staged = {"u": [], "i": [], "d": [row for row in gone if holds(before, row[:width])]}
            updated, added = staged["u"].append, staged["i"].append
            for row in rows:
                (updated if holds(before, row[:width]) else added)(row)
        lines = [line for op, part in staged.items() for line in _lines(part, op)]
        if lines:
            await _stage_rows(conn, table, lines)
            statements.append(_apply_sql(table, {op for op, part in staged.items() if part}))
    return "; ".join(statements)


async def replace_all(conn: asyncpg.Connection, state: ProjectionState) -> None:
    """Replace every projection table with the state (reproject); caller's transaction."""
    await conn.execute(_STAGE_DDL)
    statements = []
    for table in TABLES:
        statements.append(f"TRUNCATE {table.name}")
        rows = table.rows(state, table.all_keys(state))
        if rows:
            await _stage_rows(conn, table, _lines(rows, "i"))
            statements.append(f"INSERT INTO {table.name} ({', '.join(table.columns)}) SELECT "
                              f"{', '.join(map(_staged, table.columns))} FROM {_stage(table)}")  # fmt: skip
    await conn.execute("; ".join(statements))


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
    types = _EVENT_TYPES
    return [
        Event(*r[:10], types[r[10]], *r[11:16], None if r[16] is None else int(r[16]),
              None if r[17] is None else int(r[17]), r[18])
        for r in rows
    ]  # fmt: skip


_EVENT_TYPES = {t.value: t for t in EventType}


async def write_assets(conn: asyncpg.Connection | asyncpg.Pool, assets: Mapping[str, tuple[int, Decimal]]) -> None:
    """Record each asset's decimals and weight (from the config) for the points views."""
    await conn.execute(
        """INSERT INTO assets (asset, decimals, weight) SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[])
           ON CONFLICT (asset) DO UPDATE SET decimals = EXCLUDED.decimals, weight = EXCLUDED.weight""",
        list(assets),
        [d for d, _ in assets.values()],
        [w for _, w in assets.values()],
    )

"""Projection tables: load the folded state, write what a fold changed, read the events still to fold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import asyncpg

from indexer.events import Event, EventType
from indexer.projection import Changes, Checkpoint, Pending, ProjectionState
from indexer.store import position_buckets

Row = tuple[Any, ...]


Lookup = Callable[[tuple], tuple | None]  # a key's value columns, None when it has no row


@dataclass(frozen=True)
class Table:
    """How one projection maps to a table: its key and value columns, the keys a fold changed, their rows.

    A table has one row a key (`lookup`: a state's key -> value columns) or many (`many`: the rows of keys).
    With `lines`, the keys `changed` gives are those `lines` takes, which may be other than the table's own
    (position_buckets: the changed positions, which `lines` puts in their buckets).
    """

    name: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    changed: Callable[[Changes], Iterable[tuple]]
    all_keys: Callable[[ProjectionState], Iterable[tuple]]
    lookup: Callable[[ProjectionState], Lookup] | None = None
    many: Callable[[ProjectionState, Iterable[tuple]], list[Row]] | None = None
    size: Callable[[ProjectionState], int] | None = None  # its row count, when not len(all_keys(state))
    lines: Callable[[ProjectionState, ProjectionState, Iterable[tuple]], list[str]] | None = None  # see changed_lines

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.values)

    def rows(self, state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
        """The rows of `keys` in `state` (keys without one are left out)."""
        if self.lookup is None:
            assert self.many is not None
            return self.many(state, keys)
        find = self.lookup(state)
        return [(*key, *found) for key in keys if (found := find(key)) is not None]

    def count(self, state: ProjectionState) -> int:
        """About how many rows the table holds in `state` (to choose how its changes are joined)."""
        return self.size(state) if self.size is not None else len(self.all_keys(state))  # type: ignore[arg-type]


def _plain(name: str, keys: tuple[str, ...], value: str, attribute: str) -> Table:
    """A table of one mapping of the state, named alike in the state and in Changes: key -> value."""

    def lookup(state: ProjectionState) -> Lookup:
        get = getattr(state, attribute).get

        def find(key: tuple) -> tuple | None:
            found = get(key)
            return None if found is None else (found,)

        return find

    return Table(name, keys, (value,), lambda c: getattr(c, attribute), lambda s: getattr(s, attribute).keys(), lookup)


def _bucket_lines(before: ProjectionState, after: ProjectionState, positions: Iterable[tuple]) -> list[str]:
    """changed_lines for position buckets: the rows the changed positions (staker, validator, asset) rewrite."""
    lines = []
    for (validator, asset, bucket), values, op in position_buckets.changed_rows(before, after, positions):
        fields = "\\N\t\\N\t\\N" if values is None else copy_line(values)
        lines.append(f"{copy_field(validator)}\t{copy_field(asset)}\t{bucket}\t{fields}\t{op}")
    return lines


def _token(state: ProjectionState) -> Lookup:
    owners, pools = state.token_owners, state.token_pools

    def find(key: tuple) -> tuple | None:
        owner, pool = owners.get(key), pools.get(key)
        return None if owner is None and pool is None else (owner, pool)

    return find


def _withdrawal_rows(state: ProjectionState, keys: Iterable[tuple]) -> list[Row]:
    return [
        (*key, position, p.amount, p.unlock_time, p.token_id)
        for key in keys
        for position, p in enumerate(state.withdrawals.get(key, ()))
    ]


def _cursor(state: ProjectionState) -> Lookup:
    def find(key: tuple) -> tuple | None:
        cp = state.checkpoints.get(key[0])  # (block_time, chain, block_number, log_index, tx_hash)
        return None if cp is None else (cp[0], cp[2], cp[3], cp[4])

    return find


TABLES = (
    _plain("validator_amounts", ("validator", "asset"), "amount", "validators"),
    _plain("pool_amounts", ("chain", "contract", "pool"), "amount", "pools"),
    Table("position_buckets", ("validator", "asset", "bucket"), ("bits", "stakers", "amounts"),
          lambda c: c.positions, position_buckets.bucket_keys, position_buckets.bucket_lookup,
          size=position_buckets.bucket_count, lines=_bucket_lines),
    _plain("social_delegations", ("feed", "staker", "validator"), "points", "delegations"),
    _plain("lst_balances", ("chain", "contract", "holder"), "balance", "balances"),
    Table("lst_tokens", ("chain", "contract", "token_id"), ("owner", "pool"), lambda c: c.tokens,
          lambda s: s.token_owners.keys() | s.token_pools.keys(), _token,
          size=lambda s: max(len(s.token_owners), len(s.token_pools))),
    Table("pending_withdrawals", ("chain", "contract", "staker"), ("position", "amount", "unlock_time", "token_id"),
          lambda c: c.withdrawals, lambda s: s.withdrawals.keys(), many=_withdrawal_rows),
    Table("projector_cursor", ("chain",), ("block_time", "block_number", "log_index", "tx_hash"),
          lambda c: ((chain,) for chain in c.checkpoints), lambda s: [(c,) for c in s.checkpoints], _cursor),
)  # fmt: skip


# Rows travel as COPY text, joined here and parsed by Postgres (asyncpg's binary NUMERIC encoder is several
# times slower), into typed per-connection stage tables, each row marked: (i)nsert, (u)pdate or (d)elete.
# Updates go through UPDATE ... FROM rather than INSERT ... ON CONFLICT: an update that fits its page
# (HOT, see the tables' fillfactor) touches no index, so it costs a fraction of a speculative insert.
_STAGE_TYPES = {
    "amount": "numeric", "points": "numeric", "balance": "numeric", "token_id": "numeric", "position": "integer",
    "block_time": "bigint", "block_number": "bigint", "log_index": "integer", "unlock_time": "bigint",
    "bits": "smallint", "bucket": "integer", "stakers": "text[]", "amounts": "numeric[]",
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


def copy_line(row: Row) -> str:
    """A row in COPY text format, without its line end."""
    line = "\t".join(map(str, row))  # as is, unless a field is NULL or holds a character COPY escapes
    if line.count("\t") != len(row) - 1 or "\\" in line or "\n" in line or "\r" in line or None in row:
        line = "\t".join(map(copy_field, row))
    return line


def _stage(table: Table) -> str:
    return f"stage_{table.name}"


def _staged(column: str, prefix: str = "") -> str:
    """A stage column as the table's type."""
    return _CAST.get(column, "{}").format(prefix + column)


STAGE_TABLES = tuple(_stage(t) for t in TABLES)
STAGE_DDL = "; ".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {_stage(t)} "
    f'({", ".join(c + " " + _STAGE_TYPES.get(c, "text") for c in t.columns)}, op "char" NOT NULL) '
    "ON COMMIT DELETE ROWS"
    for t in TABLES
)


_HASHED_ROW_BYTES = 192  # a staged or table row in a hash join's table (measured: 200,000 positions in 29 MB)


def _apply_sql(table: Table, ops: Mapping[str, int], size: int) -> str:
    """The statements moving a table's staged rows into it, given how many rows of each kind were staged.

    Each statement's join is chosen here, not left to the planner: the stage has no statistics
    (an ANALYZE costs more than the join it informs) and, with them, the planner would multiply
    the key columns' selectivities and expect a few rows. So rows that are a good part of the
    table's `size` join by hash, fewer loop over the table's primary key.
    """
    stage, columns = _stage(table), ", ".join(table.columns)
    matches = " AND ".join(f"t.{k} = s.{k}" for k in table.keys)
    insert = f"INSERT INTO {table.name} ({columns}) SELECT {', '.join(map(_staged, table.columns))}"
    statements = ["SET LOCAL enable_mergejoin = off"]

    def joined(rows: int, statement: str) -> None:
        by_hash = rows * 8 > size
        statements.append(f"SET LOCAL enable_nestloop = {'off' if by_hash else 'on'}")
        statements.append(f"SET LOCAL enable_hashjoin = {'on' if by_hash else 'off'}")
        if by_hash:  # room to hash the rows in one go: spilled to disk in batches, the join takes half again as long
            statements.append(f"SET LOCAL work_mem = '{min(max(rows * _HASHED_ROW_BYTES >> 10, 4096), 262144)}kB'")
        statements.append(statement)

    if table.lookup is None:  # many rows a key: replace them all
        joined(sum(ops.values()), f"DELETE FROM {table.name} t USING {stage} s WHERE {matches}")
        if ops.keys() - {"d"}:
            statements.append(f"{insert} FROM {stage} WHERE op <> 'd'")
    else:
        if "d" in ops:
            joined(ops["d"], f"DELETE FROM {table.name} t USING {stage} s WHERE {matches} AND s.op = 'd'")
        if "u" in ops:
            updates = ", ".join(f"{c} = {_staged(c, 's.')}" for c in table.values)
            joined(ops["u"], f"UPDATE {table.name} t SET {updates} FROM {stage} s WHERE {matches} AND s.op = 'u'")
        if "i" in ops:
            upsert = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.values)
            statements.append(
                f"{insert} FROM {stage} WHERE op = 'i' ON CONFLICT ({', '.join(table.keys)}) DO UPDATE SET {upsert}"
            )
    statements.append("RESET enable_nestloop; RESET enable_hashjoin; RESET enable_mergejoin; RESET work_mem")
    return "; ".join(statements)


async def _copy(conn: asyncpg.Connection, table: Table, data: bytes) -> None:
    await conn.copy_to_table(  # a memoryview: asyncpg would take bytes for a file name
        _stage(table), source=memoryview(data), columns=[*table.columns, "op"], format="text"
    )


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def changed_lines(table: Table, before: ProjectionState, after: ProjectionState, keys: Iterable[tuple]) -> list[str]:
    """The stage lines of a table's changed keys, each marked (i)nsert, (u)pdate or (d)elete."""
    if table.lines is not None:  # the table's own, faster way
        return table.lines(before, after, keys)
    blanks = (None,) * len(table.values)
    if table.lookup is None:  # many rows a key: all replaced
        rows = table.rows(after, keys)
        present = {row[: len(table.keys)] for row in rows}
        gone = [(*key, *blanks) for key in keys if key not in present]
        return [*(copy_line(row) + "\ti" for row in rows), *(copy_line(row) + "\td" for row in gone)]
    now, was = table.lookup(after), table.lookup(before)
    lines = []
    for key in keys:
        found = now(key)
        if found is not None:
            lines.append(copy_line((*key, *found)) + ("\tu" if was(key) is not None else "\ti"))
        elif was(key) is not None:
            lines.append(copy_line((*key, *blanks)) + "\td")
    return lines


@dataclass(frozen=True)
class Stage:
    """One table's changed rows as COPY text, and the statements moving them in once copied."""

    table: Table
    data: bytes
    statement: str


def stage_changes(before: ProjectionState, after: ProjectionState, changes: Changes) -> list[Stage]:
    """The rows the fold from `before` to `after` changed, table by table, ready to copy (pure)."""
    stages = []
    for table in TABLES:
        keys = table.changed(changes)
        lines = changed_lines(table, before, after, keys) if keys else []
        if lines:
            ops = Counter(line[-1] for line in lines)
            stages.append(Stage(table, _text(lines), _apply_sql(table, ops, table.count(before))))
    return stages


async def copy_stages(conn: asyncpg.Connection, stages: list[Stage]) -> str:
    """Copy the stages into the connection's stage tables; returns the statement applying them.

    Run the statement in the same transaction; it may be left running on the server while the
    caller folds the next batch. The stage tables are the connection's, made by
    `database.prepare_connection` (the store's pools do it).
    """
    for stage in stages:
        await _copy(conn, stage.table, stage.data)
    return "; ".join(stage.statement for stage in stages)


async def write_stages(conn: asyncpg.Connection, stages: list[Stage]) -> None:
    """Copy the stages and apply them (one statement), in the caller's transaction."""
    statement = await copy_stages(conn, stages)
    if statement:
        await conn.execute(statement)


async def replace_all(conn: asyncpg.Connection, state: ProjectionState) -> None:
    """Replace every projection table with the state (reproject); caller's transaction, a prepared connection.

    DELETE, not TRUNCATE: TRUNCATE would lock readers (the /v1 API, dashboards) out of the tables
    until the transaction ends; under DELETE they read the old rows until it commits.
    """
    statements = []
    for table in TABLES:
        statements.append(f"DELETE FROM {table.name}")
        rows = table.rows(state, table.all_keys(state))
        if rows:
            await _copy(conn, table, _text([copy_line(row) + "\ti" for row in rows]))
            statements.append(f"INSERT INTO {table.name} ({', '.join(table.columns)}) SELECT "
                              f"{', '.join(map(_staged, table.columns))} FROM {_stage(table)}")  # fmt: skip
    await conn.execute("; ".join(statements))


async def load_state(conn: asyncpg.Connection | asyncpg.Pool) -> ProjectionState:
    """The projector's state as its tables hold it."""
    positions: dict[tuple[str, str], dict[str, int]] = {}
    for validator, asset, stakers, amounts in await conn.fetch(
        "SELECT validator, asset, stakers, amounts::text[] FROM position_buckets"
    ):
        positions.setdefault((validator, asset), {}).update(zip(stakers, map(int, amounts), strict=True))
    withdrawals: dict[tuple[str, str, str], list[Pending]] = {}
    for r in await conn.fetch(
        """SELECT chain, contract, staker, amount, extract(epoch FROM unlock_time)::bigint AS unlock, token_id
             FROM pending_withdrawals ORDER BY chain, contract, staker, position"""
    ):
        withdrawals.setdefault((r["chain"], r["contract"], r["staker"]), []).append(
            Pending(int(r["amount"]), r["unlock"], None if r["token_id"] is None else int(r["token_id"]))
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
        checkpoints=MappingProxyType(
            {
                r["chain"]: (r["block_time"], r["chain"], r["block_number"], r["log_index"], r["tx_hash"])
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
    after: Checkpoint | None,
    up_to_block: int,
    up_to_time: int,
    limit: int,
) -> list[Event]:
    """The chain's next events after checkpoint `after` (None: from the start), in chain order, up to block and time."""
    block, log_index, tx_hash = (after[2], after[3], after[4]) if after is not None else (-1, -1, "")
    rows = await conn.fetch(_EVENT_SELECT, chain, block, log_index, up_to_block, up_to_time, limit, tx_hash)
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

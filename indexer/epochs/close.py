"""The imperative shell of reward epochs: record rewards, close an epoch, export a staker's proofs.

Closing epoch N (SPEC 5) once every node chain's confirmed block time, and every social feed's
settled clock (its last read less `settle_seconds`), is >= its end: replay the projector's fold
from EMPTY over the confirmed events and feed records with block time < end (canonical order,
batched per block time; social delegations count like stakes of the feed's asset, with its
weight), record each position's amount at each change,
integrate it over [start, end) (`stake_seconds`), weigh per asset (`asset_weights`), split each
validator's reward with its `commission_bps` (`split_reward`), and store the allocations and
the Merkle root over one leaf per (staker, asset). A closed epoch is final: closing again
returns the stored root and writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby

import asyncpg

from indexer.config import tron_evm_address
from indexer.epochs import merkle
from indexer.epochs.split import AssetWeight, split_reward, stake_seconds, weighted_shares
from indexer.epochs.windows import EpochSchedule
from indexer.errors import FatalError, IndexerError
from indexer.events import Event
from indexer.projection import EMPTY, PositionKey
from indexer.projector.fold import fold
from indexer.projector.runner import asset_weights
from indexer.store import epochs as store

NODE_CHAINS = ("evm", "tron")


class EpochError(IndexerError):
    """An epoch operation the rules refuse (epoch not over on every chain, already closed, bad amount)."""


@dataclass(frozen=True, slots=True)
class CloseResult:
    epoch: int
    root: str | None  # 0x hex; None when no staker got anything
    total: int
    already_closed: bool
    validators_without_reward: tuple[str, ...] = ()  # had stake in the epoch, no reward recorded (this close only)


def schedule(config) -> EpochSchedule:
    return EpochSchedule(int(config.epochs.genesis.timestamp()), config.epochs.length_seconds)


def bounds(config, epoch: int) -> tuple[int, int]:
    """Epoch `epoch`'s [start, end) in unix seconds; EpochError for a negative number."""
    try:
        return schedule(config).epoch_bounds(epoch)
    except ValueError as exc:
        raise EpochError(str(exc)) from None


def node_chains(config) -> list[str]:
    return sorted(c.name for c in config.chains if c.kind in NODE_CHAINS)


def feed_settle_seconds(config) -> dict[str, int]:
    """Each social feed's settle time: its records count up to its last read less this."""
    return {c.name: c.settle_seconds for c in config.chains if c.kind == "social"}


def lagging_sources(end: int, frontier: dict[str, tuple[int | None, int | None]], settle: dict[str, int]) -> list[str]:
    """Why an epoch ending at `end` cannot close: each chain or feed not past it, described (pure).

    A chain's confirmed block time, or a feed's settled clock (its last read less its settle time), must
    be >= `end`; one never indexed or read blocks the close.
    """
    behind = []
    for name, (_, time) in sorted(frontier.items()):
        if name in settle:
            clock = None if time is None else time - settle[name]
            if clock is None or clock < end:
                shown = "never read" if clock is None else f"settled clock {clock}"
                behind.append(f"social feed {name} ({shown})")
        elif time is None or time < end:
            behind.append(f"{name} (confirmed block time {time})")
    return behind


def _commission_bps(config, validator: str) -> int:
    by_id = {v.id: v.commission_bps for v in config.validators}
    if validator in by_id:
        return by_id[validator]
    lowered = {k.lower(): bps for k, bps in by_id.items() if k.startswith("0x")}
    return lowered.get(validator.lower(), 0) if validator.startswith("0x") else 0


async def add_reward(pool: asyncpg.Pool, config, epoch: int, validator: str, asset: str, amount: int) -> None:
    """Record `validator`'s reward of `amount` base units of `asset` for `epoch`; refused once it is closed."""
    if amount < 0:
        raise EpochError(f"reward amount must not be negative, got {amount}")
    if not validator or not asset:
        raise EpochError("a reward needs a validator and an asset")
    start, end = bounds(config, epoch)
    validator = validator.lower() if validator.startswith("0x") else validator
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_epoch(conn, epoch, start, end)
        if row.closed:
            raise EpochError(f"epoch {epoch} is closed (root {row.root}): its rewards are final")
        await store.put_reward(conn, epoch, validator, asset, amount)


def position_timelines(events: Sequence[Event]) -> dict[PositionKey, list[tuple[int, int]]]:
    """Per (staker, validator, asset): [(block time, amount after that time's events)] by folding from EMPTY."""
    timelines: dict[PositionKey, list[tuple[int, int]]] = defaultdict(list)
    state = EMPTY
    for ts, group in groupby(events, key=lambda e: e.block_time):
        state, changes = fold(state, list(group))
        for staker, validator, asset in changes.positions:
            timelines[(staker, validator, asset)].append((ts, state.position(staker, validator, asset)))
    return dict(timelines)


def compute_allocations(
    rewards: Sequence[tuple[str, str, int]],
    seconds: dict[PositionKey, int],
    weights: dict[str, AssetWeight],
    commission_of,
) -> list[tuple[str, str, str, str, int]]:
    """(validator, staker, asset, kind, amount) rows, zero amounts left out; per reward they sum to it exactly."""
    by_validator: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for (staker, validator, asset), s in sorted(seconds.items()):
        if s > 0:
            by_validator[validator].append((staker, asset, s))
    rows = []
    for validator, asset, amount in rewards:
        shares: dict[str, Fraction] = weighted_shares(by_validator.get(validator, []), weights)
        commission, allocations = split_reward(amount, commission_of(validator), shares)
        if commission:
            rows.append((validator, validator, asset, "commission", commission))
        rows.extend((validator, s, asset, "stake", a) for s, a in sorted(allocations.items()) if a)
    return rows


def leaf_address(staker: str) -> str:
    """The 20-byte address of a staker for its leaf: EVM hex as is, TRON base58 by its body."""
    if staker.startswith("T"):
        try:
            return tron_evm_address(staker)
        except ValueError:
            pass  # not a TRON address: refused below
    digits = staker[2:] if staker[:2].lower() == "0x" else ""
    if len(digits) != 40:
        raise EpochError(f"staker {staker!r} is not a 20-byte address: it cannot be a Merkle leaf")
    return staker


def build_leaves(epoch: int, leaves: Sequence[tuple[str, str, int]]) -> dict[bytes, tuple[str, str, int]]:
    return {merkle.leaf_hash(epoch, leaf_address(s), a, amount): (s, a, amount) for s, a, amount in leaves}


async def close_epoch(pool: asyncpg.Pool, config, epoch: int) -> CloseResult:
    """Close `epoch` (idempotent: an already closed epoch returns its stored root and nothing is written)."""
    start, end = bounds(config, epoch)
    existing = await store.get_epoch(pool, epoch)
    if existing is not None and existing.closed:
        return CloseResult(epoch, existing.root, existing.total or 0, True)
    settle = feed_settle_seconds(config)
    frontier = await store.confirmed_times(pool, [*node_chains(config), *settle])
    behind = lagging_sources(end, frontier, settle)
    if behind:
        raise EpochError(f"epoch {epoch} ends at {end}: not every chain has confirmed past it yet: {', '.join(behind)}")
    weights = {a: AssetWeight(d, w) for a, (d, w) in asset_weights(config).items()}
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_epoch(conn, epoch, start, end)
        if row.closed:
            return CloseResult(epoch, row.root, row.total or 0, True)
        events = await store.events_before(conn, {c: b for c, (b, _) in frontier.items()}, end)
        timelines = position_timelines(events)
        seconds = {key: stake_seconds(t, start, end) for key, t in timelines.items()}
        rewards = await store.rewards(conn, epoch)
        rows = compute_allocations(rewards, seconds, weights, lambda v: _commission_bps(config, v))
        summed: dict[tuple[str, str], int] = defaultdict(int)
        for _, staker, asset, kind, amount in rows:
            if kind == "stake":
                summed[(staker, asset)] += amount
        leaves = build_leaves(epoch, [(s, a, x) for (s, a), x in sorted(summed.items()) if x])
        root = "0x" + merkle.root(merkle.build_tree(list(leaves))).hex() if leaves else None
        total = sum(amount for _, _, amount in rewards)
        await store.write_close(conn, epoch, rows, root, total)
    staked = {validator for (_, validator, _), s in seconds.items() if s > 0}
    unrewarded = tuple(sorted(staked - {validator for validator, _, _ in rewards}))
    return CloseResult(epoch, root, total, False, unrewarded)


async def proof(pool: asyncpg.Pool | asyncpg.Connection, epoch: int, staker: str) -> dict:
    """{epoch, root, staker, leaves: [{asset, amount, leaf, proof: [0x...]}]} for a closed epoch."""
    row = await store.get_epoch(pool, epoch)
    if row is None or not row.closed:
        raise EpochError(f"epoch {epoch} is not closed: no proofs yet")
    key = staker.lower() if staker[:2].lower() == "0x" else staker
    leaves = build_leaves(epoch, await store.staker_leaves(pool, epoch))
    out = {"epoch": epoch, "root": row.root, "staker": key, "leaves": []}
    if not leaves:
        return out
    tree = merkle.build_tree(list(leaves))
    if "0x" + merkle.root(tree).hex() != row.root:
        raise FatalError(f"epoch {epoch}: the stored allocations no longer give the stored root {row.root}")
    for leaf, (s, asset, amount) in sorted(leaves.items(), key=lambda kv: kv[1]):
        if s != key:
            continue
        path = merkle.proof(tree, merkle.index_of(tree, leaf))
        out["leaves"].append(
            {"asset": asset, "amount": str(amount), "leaf": "0x" + leaf.hex(), "proof": ["0x" + p.hex() for p in path]}
        )
    return out

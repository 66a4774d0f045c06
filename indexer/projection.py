"""The projections as one immutable value, the keys a fold changed, and the canonical event order (pure).

Plain values below both the projector (which folds into them) and the store (which writes and loads them):
`ProjectionState`, `Pending`, `Changes`, the key types, `Checkpoint`, `pool_key`, the zero addresses and
`ProjectionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import NamedTuple

from indexer.errors import FatalError
from indexer.events import Event

ZERO_ADDRESS = "0x" + "0" * 40
# The zero address (mint source, burn target) in each chain's canonical form: EVM hex, TRON base58.
ZERO_ADDRESSES = frozenset({ZERO_ADDRESS, "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb"})

ValidatorKey = tuple[str, str]  # (validator, asset)
PoolKey = tuple[str, str, str]  # (chain, contract, pool): what the contract's `stakingPools(pool)` returns
PositionKey = tuple[str, str, str]  # (staker, validator, asset)
DelegationKey = tuple[str, str, str]  # (feed name, staker, validator)
BalanceKey = tuple[str, str, str]  # (chain, contract, holder)
TokenKey = tuple[str, str, int]  # (chain, contract, token_id)
WithdrawalKey = tuple[str, str, str]  # (chain, contract, staker)
# An event's checkpoint: its place in the one order events are folded in, across chains and feeds
# (block time, chain, block number, log index, tx hash). Tuples compare field by field, so sorting by
# checkpoint is the canonical order; the projector keeps each chain's last applied checkpoint (an event at
# or below it is a replay) and stores it in `projector_cursor`. A plain tuple, not a NamedTuple: the fold
# makes one per event and a tuple is several times cheaper to build.
Checkpoint = tuple[int, str, int, int, str]


class ProjectionError(FatalError):
    """The event log contradicts the contracts' rules (history missing or out of order): reproject from the log."""


class Pending(NamedTuple):
    """Amount requested for withdrawal that unlocks at `unlock_time` (unix s), not yet withdrawn.

    ERC-721 v2: one per NFT, amount 1 and the NFT's `token_id` (None for fungible requests).
    """

    amount: int
    unlock_time: int
    token_id: int | None = None


def checkpoint(event: Event) -> Checkpoint:
    """The event's checkpoint: (block time, chain, block, log index), then tx hash for a total order."""
    return (event.block_time, event.chain, event.block_number, event.log_index, event.tx_hash)


def pool_key(event: Event) -> str:
    """The validator id an event names; an unresolved string pool is keyed `hash:<keccak256>` until named."""
    if event.pool is not None:
        return event.pool
    if event.pool_hash is not None:
        return f"hash:{event.pool_hash}"
    raise ProjectionError(f"{event.event_type} without a pool in {where(event)}")


def where(event: Event) -> str:
    """An event's coordinates for an error message."""
    return f"chain {event.chain} tx {event.tx_hash} log {event.log_index} (block {event.block_number})"


def _frozen() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ProjectionState:
    """Everything the projector knows; zero amounts and empty entries are dropped, so equal history gives equal state.

    Every mapping is read-only. `positions` is nested by (validator, asset) so an over-unstake
    reaches the pool's other stakers without scanning every position.
    """

    validators: Mapping[ValidatorKey, int] = field(default_factory=_frozen)
    pools: Mapping[PoolKey, int] = field(default_factory=_frozen)
    positions: Mapping[ValidatorKey, Mapping[str, int]] = field(default_factory=_frozen)  # -> staker -> amount
    delegations: Mapping[DelegationKey, int] = field(default_factory=_frozen)  # social points
    balances: Mapping[BalanceKey, int] = field(default_factory=_frozen)  # LST; ERC-721: tokens held
    token_owners: Mapping[TokenKey, str] = field(default_factory=_frozen)  # ERC-721 LST holder
    token_pools: Mapping[TokenKey, str] = field(default_factory=_frozen)  # ERC-721: pool a staked token is in
    withdrawals: Mapping[WithdrawalKey, tuple[Pending, ...]] = field(default_factory=_frozen)  # by unlock time
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=_frozen)  # chain -> its last applied event's

    def position(self, staker: str, validator: str, asset: str) -> int:
        """One staker's amount of `asset` at `validator` (0 when none)."""
        return self.positions.get((validator, asset), {}).get(staker, 0)


EMPTY = ProjectionState()


@dataclass(frozen=True, slots=True)
class Changes:
    """Keys whose value differs after a fold; a key absent from the new state was deleted (its row goes)."""

    validators: frozenset[ValidatorKey] = frozenset()
    pools: frozenset[PoolKey] = frozenset()
    positions: frozenset[PositionKey] = frozenset()
    delegations: frozenset[DelegationKey] = frozenset()
    balances: frozenset[BalanceKey] = frozenset()
    tokens: frozenset[TokenKey] = frozenset()  # owner or staked pool changed
    withdrawals: frozenset[WithdrawalKey] = frozenset()
    checkpoints: frozenset[str] = frozenset()  # chains whose checkpoint moved

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

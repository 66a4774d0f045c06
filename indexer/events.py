"""The normalized event: one row of the event log, the same for every chain and source."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class EventType(StrEnum):
    STAKE = "stake"
    UNSTAKE = "unstake"
    UNSTAKE_REQUEST = "unstake_request"
    UNSTAKE_BATCH = "unstake_batch"  # aggregate of an unstakeMultiple; amounts count in its per-pool requests
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    SOCIAL_DELEGATE = "social_delegate"
    SOCIAL_UNDELEGATE = "social_undelegate"


class Event(NamedTuple):
    """One on-chain log (or feed record), decoded and normalized.

    Addresses are in the chain's canonical form (EVM: lower-case 0x hex).
    For ERC-721 contracts `amount` is 1 and `token_id` names the token.
    An immutable NamedTuple rather than a frozen dataclass: a backfill builds
    one per log, and a frozen dataclass's `__init__` costs ten times as much.
    """

    chain: str
    chain_id: int
    contract: str
    contract_kind: str  # native | erc20 | erc721 | social
    contract_version: int
    block_number: int
    block_hash: str
    block_time: int  # unix seconds
    tx_hash: str
    log_index: int
    event_type: EventType
    asset: str
    staker: str | None = None  # staker, unstaker, withdrawer; Transfer: sender
    counterparty: str | None = None  # Transfer: receiver
    pool: str | None = None  # validator id: address or string name
    pool_hash: str | None = None  # keccak256(name) of a `string indexed` pool
    amount: int | None = None
    token_id: int | None = None
    unlock_time: int | None = None  # unix seconds

    @property
    def key(self) -> tuple[str, str, int]:
        """The event log's natural key."""
        return (self.chain, self.tx_hash, self.log_index)

    @property
    def pool_resolved(self) -> bool:
        """False while a `string indexed` pool is known only by its hash."""
        return self.pool is not None or self.pool_hash is None

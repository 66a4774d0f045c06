"""The projector's pure core: fold a batch of events, in canonical order, into the projection state.

Each kind of event touches only what it stands for: stakes and unstakes move pools,
validator amounts and positions; the LST's Transfer alone moves balances;
`unstake_batch` repeats its per-pool requests and changes nothing; `withdrawal`
settles matured requests. An unresolved string pool is keyed `hash:<keccak256>`
(see `pool_key`); once its name is known, reproject so its history merges into the name.

Idempotence: the state keeps, per chain, the checkpoint of the last applied event. An event
at or below its chain's checkpoint was applied before and is skipped, so replaying a
batch changes nothing. Batches must follow each other in canonical order (the runner
folds only up to the time every chain has confirmed); an event that would land before
one already applied on another chain raises ProjectionError rather than fold out of order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from typing import Any

from indexer.events import Event, EventType
from indexer.projection import (
    ZERO_ADDRESSES,
    Changes,
    Pending,
    ProjectionError,
    ProjectionState,
    checkpoint,
    pool_key,
    where,
)
from indexer.projector.draft import Draft


def fold(
    state: ProjectionState, events: Iterable[Event], *, changes: bool = True, independent: Set[str] = frozenset()
) -> tuple[ProjectionState, Changes]:
    """The state after `events` (any order within the batch; already applied ones skipped) and what changed.

    `independent` names chains whose events touch nothing any other chain's events touch (social
    feeds, with assets of their own): they keep their own order only, not the cross-chain one.
    With `changes=False` the keys changed are not worked out (an empty Changes): for a rebuild.
    """
    draft = Draft(state, independent)
    apply(draft, events)
    return draft.freeze(changes=changes)


def apply(draft: Draft, events: Iterable[Event]) -> int:
    """Fold `events` into an open draft, as `fold` does; returns how many were applied (not replays).

    Several batches may go into one draft, each after the one before in canonical order: the
    runner reads a step in small batches and freezes the draft only when it writes.
    """
    checkpoints, independent, latest = draft.checkpoints, draft.independent, draft.latest
    handlers = _HANDLERS
    applied = 0
    for cp, event in sorted(((checkpoint(e), e) for e in events), key=_first):
        applied_to = checkpoints.get(event.chain)
        if applied_to is not None and cp <= applied_to:
            continue
        ordered = event.chain not in independent
        if ordered and latest is not None and cp < latest:
            raise ProjectionError(
                f"event out of canonical order: {where(event)} at time {event.block_time} comes after an event "
                f"of {latest[1]} at time {latest[0]} was applied; reproject from the event log"
            )
        handler = handlers.get(event.event_type)
        if handler is None:
            raise ProjectionError(f"unknown event type {event.event_type!r} in {where(event)}")
        handler(draft, event)
        checkpoints[event.chain] = cp
        if ordered:
            latest = cp
        applied += 1
    draft.latest = latest
    return applied


def _first(pair: tuple) -> Any:
    return pair[0]


def _amount(event: Event) -> int:
    if event.contract_kind == "erc721":
        return 1  # an ERC-721 stake, unstake, request, withdrawal or transfer moves one token
    if event.amount is None or event.amount < 0:
        raise ProjectionError(f"{event.event_type} with amount {event.amount!r} in {where(event)}")
    return event.amount


def _party(value: str | None, event: Event) -> str:
    if value is None:
        raise ProjectionError(f"{event.event_type} without a staker/holder in {where(event)}")
    return value


def _token(event: Event) -> tuple[str, str, int]:
    if event.token_id is None:
        raise ProjectionError(f"ERC-721 {event.event_type} without a token id in {where(event)}")
    return (event.chain, event.contract, event.token_id)


def _stake(draft: Draft, event: Event) -> None:
    pool = pool_key(event)
    draft.stake(event, pool, _party(event.staker, event), _amount(event))
    if event.contract_kind == "erc721":
        draft.token_pools.set(_token(event), pool)


def _unstake(draft: Draft, event: Event) -> None:
    pool = pool_key(event)
    if event.contract_kind == "erc721":
        token = _token(event)
        staked_in = draft.token_pools.get(token)
        if staked_in is not None and staked_in != pool:
            raise ProjectionError(f"token {token[2]} is staked in {staked_in}, not {pool}, in {where(event)}")
        draft.token_pools.set(token, None)
    draft.unstake(event, pool, _party(event.staker, event), _amount(event))


def _unstake_request(draft: Draft, event: Event) -> None:
    _unstake(draft, event)
    if event.unlock_time is None:
        raise ProjectionError(f"unstake request without an unlock time in {where(event)}")
    key = (event.chain, event.contract, _party(event.staker, event))
    if event.contract_kind == "erc721":  # one request per NFT, settled by the Withdrawal naming it
        queue = (*draft.withdrawals.get(key, ()), Pending(1, event.unlock_time, _token(event)[2]))
        draft.withdrawals.set(key, tuple(sorted(queue, key=_by_unlock_and_token)))
        return
    amount = _amount(event)
    if amount:
        queue = {p.unlock_time: p.amount for p in draft.withdrawals.get(key, ())}
        queue[event.unlock_time] = queue.get(event.unlock_time, 0) + amount
        draft.withdrawals.set(key, tuple(Pending(total, unlock) for unlock, total in sorted(queue.items())))


def _by_unlock_and_token(pending: Pending) -> tuple[int, int]:
    return (pending.unlock_time, pending.token_id or 0)


def _unstake_batch(draft: Draft, event: Event) -> None:
    """The aggregate of an unstakeMultiple: its per-pool requests already counted every amount."""


def _withdrawal(draft: Draft, event: Event) -> None:
    key = (event.chain, event.contract, _party(event.staker, event))
    queue = draft.withdrawals.get(key, ())
    if event.contract_kind == "erc721":  # returns the one NFT it names
        token_id = _token(event)[2]
        settled = next((p for p in queue if p.token_id == token_id and p.unlock_time <= event.block_time), None)
        if settled is None:
            raise ProjectionError(
                f"withdrawal of NFT {token_id} by {event.staker}, which has no matured request for it, "
                f"in {where(event)}"
            )
        rest = list(queue)
        rest.remove(settled)
        draft.withdrawals.set(key, tuple(rest))
        return
    matured = sum(p.amount for p in queue if p.unlock_time <= event.block_time)
    if matured != _amount(event):
        raise ProjectionError(
            f"withdrawal of {event.amount} by {event.staker}, but {matured} of its requests matured, in {where(event)}"
        )
    draft.withdrawals.set(key, tuple(p for p in queue if p.unlock_time > event.block_time))


def _transfer(draft: Draft, event: Event) -> None:
    sender, receiver, amount = _party(event.staker, event), _party(event.counterparty, event), _amount(event)
    if event.contract_kind == "erc721":
        token = _token(event)
        owner = draft.token_owners.get(token)
        if owner != (None if sender in ZERO_ADDRESSES else sender):
            raise ProjectionError(f"token {token[2]} moved from {sender} but held by {owner} in {where(event)}")
        draft.token_owners.set(token, None if receiver in ZERO_ADDRESSES else receiver)
    if sender not in ZERO_ADDRESSES:
        draft.balances.add((event.chain, event.contract, sender), -amount, event, "LST balance")
    if receiver not in ZERO_ADDRESSES:
        draft.balances.add((event.chain, event.contract, receiver), amount, event, "LST balance")


def _delegate(draft: Draft, event: Event) -> None:
    validator, staker, amount = pool_key(event), _party(event.staker, event), _amount(event)
    draft.delegations.add((event.chain, staker, validator), amount, event, "delegation")
    draft.stake(event, validator, staker, amount)


def _undelegate(draft: Draft, event: Event) -> None:
    """Remove up to what the staker delegated to this validator through this feed; never below zero."""
    validator, staker = pool_key(event), _party(event.staker, event)
    key = (event.chain, staker, validator)
    amount = min(_amount(event), draft.delegations.get(key, 0))
    if amount:
        draft.delegations.add(key, -amount, event, "delegation")
        draft.unstake(event, validator, staker, amount)


_HANDLERS: dict[str, Callable[[Draft, Event], None]] = {
    EventType.STAKE: _stake,
    EventType.UNSTAKE: _unstake,
    EventType.UNSTAKE_REQUEST: _unstake_request,
    EventType.UNSTAKE_BATCH: _unstake_batch,
    EventType.WITHDRAWAL: _withdrawal,
    EventType.TRANSFER: _transfer,
    EventType.SOCIAL_DELEGATE: _delegate,
    EventType.SOCIAL_UNDELEGATE: _undelegate,
}

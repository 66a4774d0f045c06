"""A batch's private, mutable working copy of the projection state, frozen again when the batch is folded."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Set
from itertools import compress
from types import MappingProxyType
from typing import Any

from indexer.events import Event
from indexer.projection import (
    Changes,
    Checkpoint,
    PositionKey,
    ProjectionError,
    ProjectionState,
    ValidatorKey,
    where,
)
from indexer.projector.prorata import shares

VECTOR_AT = 1024  # positions from which a pool's pro rata runs on limb arrays (numpy); below, integers are faster


class Table:
    """One flat projection: its rows, copied for the batch on the first write, and the keys the batch touched."""

    __slots__ = ("base", "rows", "owned", "touched")

    def __init__(self, base: Mapping) -> None:
        self.base = base
        self.rows: Any = base  # the base (read-only) until the first write, then an owned dict
        self.owned = False
        self.touched: set = set()

    def get(self, key: Any, default: Any = None) -> Any:
        return self.rows.get(key, default)

    def set(self, key: Any, value: Any) -> None:
        """Store `value`; a zero, None or empty value deletes the row."""
        if not self.owned:
            self.rows, self.owned = dict(self.base), True
        if value:
            self.rows[key] = value
        else:
            self.rows.pop(key, None)
        self.touched.add(key)

    def add(self, key: Any, delta: int, event: Event, what: str) -> None:
        """Add `delta` to an amount; going below zero means the log contradicts the chain."""
        value = self.rows.get(key, 0) + delta
        if value < 0:
            raise ProjectionError(f"{what} {key} would go negative ({value}) at {event.event_type} in {where(event)}")
        self.set(key, value)

    def frozen(self) -> Mapping:
        return MappingProxyType(self.rows) if self.owned else self.base

    def changed(self) -> frozenset:
        return frozenset(key for key in self.touched if self.base.get(key) != self.rows.get(key))


class Positions:
    """Positions nested by (validator, asset); an inner mapping is copied the first time the batch touches it.

    A pool of at least VECTOR_AT positions that a pro rata takes from is kept, for the rest of the
    batch, as limb arrays (`projector/vector.py`: the same exact arithmetic on whole arrays), and
    turned back into a mapping when the draft is frozen.
    """

    __slots__ = ("base", "rows", "owned", "touched", "whole", "vectors")

    def __init__(self, base: ProjectionState) -> None:
        self.base = base
        self.rows: dict[ValidatorKey, Mapping[str, int]] = dict(base.positions)
        self.owned: set[ValidatorKey] = set()
        self.touched: dict[ValidatorKey, set[str]] = {}  # (validator, asset) -> stakers whose amount was written
        self.whole: set[ValidatorKey] = set()  # pools a pro rata wrote every position of
        self.vectors: dict[ValidatorKey, Any] = {}  # pools kept as limb arrays (PoolVector) in this batch

    def stakers(self, validator: str, asset: str) -> dict[str, int]:
        key = (validator, asset)
        if key not in self.owned:
            self.rows[key] = dict(self.rows.get(key, {}))
            self.owned.add(key)
            self.touched.setdefault(key, set())
        return self.rows[key]  # type: ignore[return-value]

    def add(self, staker: str, validator: str, asset: str, amount: int) -> None:
        vector = self.vectors.get((validator, asset))
        if vector is not None:
            if vector.add(staker, amount):
                return
            self._unvectorize((validator, asset))  # the pool outgrew the limbs: back to Python integers
        stakers = self.stakers(validator, asset)
        self._set(stakers, staker, stakers.get(staker, 0) + amount)
        self.touched[(validator, asset)].add(staker)

    def remove(self, holder: str, validator: str, asset: str, amount: int, event: Event) -> None:
        """Take `amount` from the holder's own position first, the excess from the others pro rata."""
        key = (validator, asset)
        vector = self.vectors.get(key)
        if vector is None:
            stakers = self.stakers(validator, asset)
            if amount > stakers.get(holder, 0) and len(stakers) >= VECTOR_AT:
                vector = self._vectorize(key)
        if vector is not None:
            own = min(vector.get(holder), amount)
            vector.add(holder, -own)
            if amount > own:
                try:
                    vector.take_pro_rata(amount - own)
                except ValueError as exc:
                    raise ProjectionError(f"positions at {validator}/{asset} broken ({exc}) in {where(event)}") from exc
            return
        touched = self.touched[key]
        own = min(stakers.get(holder, 0), amount)
        if own:
            self._set(stakers, holder, stakers[holder] - own)
            touched.add(holder)
        if amount == own:
            return
        names, held = list(stakers), list(stakers.values())  # the holder's own position is gone by now
        try:
            taken = shares(names, held, amount - own)
        except ValueError as exc:
            raise ProjectionError(f"positions at {validator}/{asset} broken ({exc}) in {where(event)}") from exc
        left = list(map(int.__sub__, held, taken))
        stakers.update(zip(names, left, strict=True))  # in C: a pool's every position may give a little
        if 0 in left:
            for name in compress(names, map(operator.not_, left)):
                del stakers[name]
        self.whole.add((validator, asset))  # nearly every position gave: `changed` compares them all

    def _vectorize(self, key: ValidatorKey) -> Any:
        """The pool as limb arrays from now on in this batch; None if its total is too large for them."""
        from indexer.projector.vector import PoolVector  # numpy: loaded only when a large pool needs it

        try:
            vector = self.vectors[key] = PoolVector(self.rows[key])
        except ValueError:  # its total is 2^95 or more
            return None
        self.whole.add(key)
        return vector

    def _unvectorize(self, key: ValidatorKey) -> None:
        self.rows[key] = dict(self.vectors.pop(key).items())

    @staticmethod
    def _set(stakers: dict[str, int], staker: str, amount: int) -> None:
        if amount:
            stakers[staker] = amount
        else:
            del stakers[staker]

    def frozen(self) -> Mapping:
        for key in list(self.vectors):
            self._unvectorize(key)
        for key in self.owned:
            if self.rows[key]:
                self.rows[key] = MappingProxyType(self.rows[key])  # type: ignore[arg-type]
            else:
                del self.rows[key]
        self.owned.clear()
        return MappingProxyType(self.rows)

    def written(self) -> int:
        """How many positions the draft has written so far (some perhaps back to their old value)."""
        return sum(self._size(key) if key in self.whole else len(stakers) for key, stakers in self.touched.items())

    def _size(self, key: ValidatorKey) -> int:
        vector = self.vectors.get(key)
        return len(self.rows[key]) if vector is None else vector.size

    def changed(self, new: ProjectionState) -> frozenset[PositionKey]:
        none: Mapping[str, int] = {}
        changed = []
        for (validator, asset), stakers in self.touched.items():
            before = self.base.positions.get((validator, asset), none)
            after = new.positions.get((validator, asset), none)
            if (validator, asset) in self.whole:  # nearly all of them: compared as sets of items, in C
                differing = {s for s, _ in after.items() - before.items()} | (before.keys() - after.keys())
                changed.extend((s, validator, asset) for s in differing)
            else:
                changed.extend((s, validator, asset) for s in stakers if before.get(s) != after.get(s))
        return frozenset(changed)


class Draft:
    """Every projection of a state, open for the batches folded until it is frozen.

    `checkpoints` holds per chain the checkpoint of its last applied event (an event at or below
    it is a replay); `latest` the latest of those over the chains not `independent`.
    """

    def __init__(self, state: ProjectionState, independent: Set[str] = frozenset()) -> None:
        self.base = state
        self.independent = independent
        self.checkpoints: dict[str, Checkpoint] = dict(state.checkpoints)
        self.latest: Checkpoint | None = max(
            (cp for chain, cp in self.checkpoints.items() if chain not in independent), default=None
        )
        self.validators = Table(state.validators)
        self.pools = Table(state.pools)
        self.positions = Positions(state)
        self.delegations = Table(state.delegations)
        self.balances = Table(state.balances)
        self.token_owners = Table(state.token_owners)
        self.token_pools = Table(state.token_pools)
        self.withdrawals = Table(state.withdrawals)
        self._checkpoint_rows = Table(state.checkpoints)

    def stake(self, event: Event, pool: str, staker: str, amount: int) -> None:
        """Add a stake to the contract's pool, the validator and the staker's position."""
        self.pools.add((event.chain, event.contract, pool), amount, event, "pool")
        self.validators.add((pool, event.asset), amount, event, "validator")
        self.positions.add(staker, pool, event.asset, amount)

    def unstake(self, event: Event, pool: str, holder: str, amount: int) -> None:
        """Remove an unstake from the contract's pool, the validator and the positions (SPEC 4)."""
        key = (event.chain, event.contract, pool)
        held = self.pools.get(key, 0)
        if held < amount:
            raise ProjectionError(
                f"{event.event_type} of {amount} from pool {pool} of contract {event.contract}, which holds only "
                f"{held}, in {where(event)}"
            )
        self.pools.add(key, -amount, event, "pool")
        self.validators.add((pool, event.asset), -amount, event, "validator")
        self.positions.remove(holder, pool, event.asset, amount, event)

    def written(self) -> int:
        """How many keys the draft has written so far (some perhaps back to their old value)."""
        tables = (self.validators, self.pools, self.delegations, self.balances, self.token_owners, self.token_pools,
                  self.withdrawals)  # fmt: skip
        return sum(len(t.touched) for t in tables) + self.positions.written()

    def freeze(self, *, changes: bool = True) -> tuple[ProjectionState, Changes]:
        """The new state and the keys whose value it changed (none reported unless `changes`)."""
        for chain, cp in self.checkpoints.items():
            self._checkpoint_rows.set(chain, cp)  # unchanged ones are not reported as changed
        state = ProjectionState(
            validators=self.validators.frozen(),
            pools=self.pools.frozen(),
            positions=self.positions.frozen(),
            delegations=self.delegations.frozen(),
            balances=self.balances.frozen(),
            token_owners=self.token_owners.frozen(),
            token_pools=self.token_pools.frozen(),
            withdrawals=self.withdrawals.frozen(),
            checkpoints=self._checkpoint_rows.frozen(),
        )
        if not changes:
            return state, Changes()
        return state, Changes(
            validators=self.validators.changed(),
            pools=self.pools.changed(),
            positions=self.positions.changed(state),
            delegations=self.delegations.changed(),
            balances=self.balances.changed(),
            tokens=self.token_owners.changed() | self.token_pools.changed(),
            withdrawals=self.withdrawals.changed(),
            checkpoints=self._checkpoint_rows.changed(),
        )

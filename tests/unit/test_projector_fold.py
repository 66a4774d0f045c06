"""The projector's pure fold: event log -> validator amounts, positions, LST balances, pending withdrawals."""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import FatalError
from indexer.events import Event, EventType
from indexer.projection import EMPTY, Pending, ProjectionError, ProjectionState, checkpoint
from indexer.projector import draft as draft_module
from indexer.projector import fold, take_pro_rata

ZERO = "0x" + "0" * 40
ALICE, BOB, CAROL, DAVE = ("0x" + c * 40 for c in "abcd")
P, Q = "0x" + "1" * 40, "0x" + "2" * 40
LOCK = 3 * 86400
ETH_V1 = "0x" + "e1" * 20
Log = tuple[str, dict[str, Any]]


# --- building events by hand -------------------------------------------------------------------------------------


def tx(time: int, *logs: Log, chain="alpha", contract=ETH_V1, kind="native", version=1, asset="ETH") -> list[Event]:
    """The events of one transaction, alone in its block (numbered by its time) on `chain`."""
    return [
        Event(
            chain, 1, contract, kind, version, time, f"0xb{time}", time, f"0x{chain}{time}", i, EventType(t), asset, **f
        )
        for i, (t, f) in enumerate(logs)
    ]


def mint(to: str, amount: int = 1, token_id: int | None = None) -> Log:
    return ("transfer", {"staker": ZERO, "counterparty": to, "amount": amount, "token_id": token_id})


def burn(holder: str, amount: int = 1, token_id: int | None = None) -> Log:
    return ("transfer", {"staker": holder, "counterparty": ZERO, "amount": amount, "token_id": token_id})


def move(sender: str, receiver: str, amount: int = 1, token_id: int | None = None) -> Log:
    return ("transfer", {"staker": sender, "counterparty": receiver, "amount": amount, "token_id": token_id})


def stake(staker: str, pool: str | None, amount: int = 1, token_id: int | None = None, pool_hash=None) -> Log:
    return ("stake", {"staker": staker, "pool": pool, "amount": amount, "token_id": token_id, "pool_hash": pool_hash})


def unstake(holder: str, pool: str, amount: int = 1, token_id: int | None = None) -> Log:
    return ("unstake", {"staker": holder, "pool": pool, "amount": amount, "token_id": token_id})


def request(holder: str, pool: str | None, amount: int, unlock: int, pool_hash=None, token_id=None) -> Log:
    fields = {"staker": holder, "pool": pool, "amount": amount, "unlock_time": unlock, "pool_hash": pool_hash}
    return ("unstake_request", fields | {"token_id": token_id})


def batch(holder: str, total: int, unlock: int) -> Log:
    return ("unstake_batch", {"staker": holder, "amount": total, "unlock_time": unlock})


def withdraw(holder: str, amount: int, token_id: int | None = None) -> Log:
    return ("withdrawal", {"staker": holder, "amount": amount, "token_id": token_id})


def stake_tx(time: int, staker: str, pool: str, amount: int, **where: Any) -> list[Event]:
    """A stake as the contract logs it: the LST mint, then StakeOccured."""
    return tx(time, mint(staker, amount), stake(staker, pool, amount), **where)


def project(*txs: list[Event]) -> ProjectionState:
    return fold(EMPTY, [e for events in txs for e in events])[0]


def positions(state: ProjectionState) -> dict[tuple[str, str], dict[str, int]]:
    return {key: dict(stakers) for key, stakers in state.positions.items()}


# --- hand-written scenarios ---------------------------------------------------------------------------------------


def test_stake_and_unstake_move_pool_validator_position_and_balance():
    state = project(stake_tx(1, ALICE, P, 100), stake_tx(2, BOB, P, 50), tx(3, burn(ALICE, 30), unstake(ALICE, P, 30)))
    assert dict(state.validators) == {(P, "ETH"): 120}
    assert dict(state.pools) == {("alpha", ETH_V1, P): 120}
    assert positions(state) == {(P, "ETH"): {ALICE: 70, BOB: 50}}
    assert dict(state.balances) == {("alpha", ETH_V1, ALICE): 70, ("alpha", ETH_V1, BOB): 50}


def test_holder_unstaking_more_than_its_position_takes_the_excess_pro_rata_by_largest_remainder():
    # Positions at P: alice 50, bob 30, carol 20, dave 5. Alice sends dave 7 LST; dave unstakes 12 from P.
    # Dave's own 5 go first; the excess 7 is shared over the other 100 in proportion:
    #   alice 7*50/100 = 3.5 -> 3 r .5, bob 7*30/100 = 2.1 -> 2 r .1, carol 7*20/100 = 1.4 -> 1 r .4
    # 6 whole units; the one left goes to the largest remainder (alice): alice -4, bob -2, carol -1.
    state = project(
        stake_tx(1, ALICE, P, 50),
        stake_tx(2, BOB, P, 30),
        stake_tx(3, CAROL, P, 20),
        stake_tx(4, DAVE, P, 5),
        tx(5, move(ALICE, DAVE, 7)),
        tx(6, burn(DAVE, 12), unstake(DAVE, P, 12)),
    )
    assert positions(state) == {(P, "ETH"): {ALICE: 46, BOB: 28, CAROL: 19}}
    assert dict(state.validators) == {(P, "ETH"): 93}
    assert dict(state.balances) == {("alpha", ETH_V1, a): b for a, b in [(ALICE, 43), (BOB, 30), (CAROL, 20)]}


def test_a_draft_counts_the_keys_it_wrote_a_pro_rata_one_for_every_position_it_took_from():
    from indexer.projector.draft import Draft
    from indexer.projector.fold import apply

    draft = Draft(EMPTY)
    apply(draft, [*stake_tx(1, ALICE, P, 50), *stake_tx(2, BOB, P, 30), *stake_tx(3, CAROL, P, 20)])
    assert draft.written() == 2 + 3 + 3  # pool and validator; three positions; three balances
    apply(draft, [*tx(4, move(ALICE, DAVE, 10)), *tx(5, burn(DAVE, 10), unstake(DAVE, P, 10))])
    assert draft.written() == 2 + 3 + 4  # dave's balance is new; his unstake took from all three positions


def test_equal_remainders_go_to_the_lower_address_first():
    # Carol, alice and bob (in that order) stake 1 each; carol and alice send their LST to dave, who unstakes 2.
    # Each other position owes 2/3: floor 0, remainder 2/3 for all three; the 2 units go to alice then bob.
    state = project(
        stake_tx(1, CAROL, P, 1),
        stake_tx(2, ALICE, P, 1),
        stake_tx(3, BOB, P, 1),
        tx(4, move(CAROL, DAVE, 1)),
        tx(5, move(ALICE, DAVE, 1)),
        tx(6, burn(DAVE, 2), unstake(DAVE, P, 2)),
    )
    assert positions(state) == {(P, "ETH"): {CAROL: 1}}
    assert dict(state.balances) == {("alpha", ETH_V1, BOB): 1}


def test_unstake_multiple_counts_its_per_pool_requests_once_and_queues_one_withdrawal():
    v2 = {"chain": "beta", "contract": "0x" + "e2" * 20, "kind": "erc20", "version": 2, "asset": "TKN"}
    unlock = 10 + LOCK
    state = project(
        stake_tx(1, ALICE, P, 40, **v2),
        stake_tx(2, ALICE, Q, 60, **v2),
        tx(
            10,
            *(burn(ALICE, 15), request(ALICE, P, 15, unlock)),
            *(burn(ALICE, 25), request(ALICE, Q, 25, unlock)),
            batch(ALICE, 40, unlock),  # the aggregate: its 40 are the two requests above
            **v2,
        ),
    )
    assert dict(state.validators) == {(P, "TKN"): 25, (Q, "TKN"): 35}
    assert positions(state) == {(P, "TKN"): {ALICE: 25}, (Q, "TKN"): {ALICE: 35}}
    assert dict(state.withdrawals) == {("beta", v2["contract"], ALICE): (Pending(40, unlock),)}
    assert dict(state.balances) == {("beta", v2["contract"], ALICE): 60}


def test_withdrawal_settles_only_matured_requests_and_leaves_points_alone():
    v2 = {"contract": "0x" + "e3" * 20, "kind": "native", "version": 2}
    state = project(
        stake_tx(1, ALICE, P, 100, **v2),
        tx(10, burn(ALICE, 30), request(ALICE, P, 30, 10 + LOCK), **v2),
        tx(20, burn(ALICE, 20), request(ALICE, P, 20, 20 + LOCK), **v2),
        tx(15 + LOCK, withdraw(ALICE, 30), **v2),
    )
    assert dict(state.withdrawals) == {("alpha", v2["contract"], ALICE): (Pending(20, 20 + LOCK),)}
    assert dict(state.validators) == {(P, "ETH"): 50}
    assert positions(state) == {(P, "ETH"): {ALICE: 50}}
    with pytest.raises(ProjectionError, match="withdrawal of 20"):  # the second request is not mature yet
        fold(state, tx(16 + LOCK, withdraw(ALICE, 20), **v2))
    later, _ = fold(state, tx(20 + LOCK, withdraw(ALICE, 20), **v2))
    assert dict(later.withdrawals) == {}


def test_erc721_stake_transfer_and_unstake_count_tokens_and_track_their_pool_and_owner():
    nft = {"contract": "0x" + "ff" * 20, "kind": "erc721", "asset": "NFT"}
    state = project(
        tx(1, mint(ALICE, 1, 7), stake(ALICE, P, 1, 7), **nft),
        tx(2, mint(CAROL, 1, 8), stake(CAROL, P, 1, 8), **nft),
        tx(3, mint(CAROL, 1, 9), stake(CAROL, Q, 1, 9), **nft),
        tx(4, move(ALICE, BOB, 1, 7), **nft),
    )
    key = ("alpha", nft["contract"])
    assert dict(state.token_owners) == {(*key, 7): BOB, (*key, 8): CAROL, (*key, 9): CAROL}
    assert dict(state.token_pools) == {(*key, 7): P, (*key, 8): P, (*key, 9): Q}
    assert dict(state.balances) == {(*key, BOB): 1, (*key, CAROL): 2}
    # Bob holds no position at P: his 1 is taken from alice 1 / carol 1 (equal remainders: alice, the lower address).
    state, _ = fold(state, tx(5, burn(BOB, 1, 7), unstake(BOB, P, 1, 7), **nft))
    assert dict(state.validators) == {(P, "NFT"): 1, (Q, "NFT"): 1}
    assert positions(state) == {(P, "NFT"): {CAROL: 1}, (Q, "NFT"): {CAROL: 1}}
    assert dict(state.token_pools) == {(*key, 8): P, (*key, 9): Q}
    assert dict(state.token_owners) == {(*key, 8): CAROL, (*key, 9): CAROL}
    assert dict(state.balances) == {(*key, CAROL): 2}
    with pytest.raises(ProjectionError, match="token 9 is staked in"):
        fold(state, tx(6, burn(CAROL, 1, 9), unstake(CAROL, P, 1, 9), **nft))


def test_erc721_v2_keeps_one_request_per_nft_until_the_withdrawal_naming_it_and_nft_zero_forever():
    nft = {"contract": "0x" + "fe" * 20, "kind": "erc721", "version": 2, "asset": "NFT"}
    key = ("alpha", nft["contract"], ALICE)
    state = project(
        *(tx(i, mint(ALICE, 1, token), stake(ALICE, P, 1, token), **nft) for i, token in ((1, 0), (2, 5), (3, 6))),
        tx(10, burn(ALICE, 1, 6), request(ALICE, P, 1, 10 + LOCK, token_id=6), **nft),
        tx(11, burn(ALICE, 1, 0), request(ALICE, P, 1, 11 + LOCK, token_id=0), **nft),
        tx(12, burn(ALICE, 1, 5), request(ALICE, P, 1, 10 + LOCK, token_id=5), **nft),
    )
    assert dict(state.withdrawals) == {
        key: (Pending(1, 10 + LOCK, 5), Pending(1, 10 + LOCK, 6), Pending(1, 11 + LOCK, 0))
    }
    assert dict(state.validators) == {} and dict(state.token_pools) == {} and dict(state.balances) == {}
    # The real contract returns every matured NFT but 0, one Withdrawal each, in its array order.
    later, _ = fold(state, [*tx(20 + LOCK, withdraw(ALICE, 1, 6), **nft), *tx(21 + LOCK, withdraw(ALICE, 1, 5), **nft)])
    assert dict(later.withdrawals) == {key: (Pending(1, 11 + LOCK, 0),)}
    with pytest.raises(ProjectionError, match="withdrawal of NFT 0 .* no matured request"):
        fold(state, tx(10 + LOCK, withdraw(ALICE, 1, 0), **nft))  # before NFT 0's unlock time
    with pytest.raises(ProjectionError, match="withdrawal of NFT 7"):
        fold(later, tx(30 + LOCK, withdraw(ALICE, 1, 7), **nft))


def test_transfers_mint_burn_and_move_balances_without_zero_rows_or_the_zero_address():
    state = project(
        stake_tx(1, ALICE, P, 10),
        tx(2, move(ALICE, BOB, 4)),
        tx(3, move(BOB, CAROL, 4)),
        tx(4, burn(ALICE, 6), unstake(ALICE, P, 6)),
    )
    assert dict(state.balances) == {("alpha", ETH_V1, CAROL): 4}
    with pytest.raises(ProjectionError, match="LST balance"):
        fold(state, tx(5, move(CAROL, DAVE, 5)))


def test_an_unresolved_string_pool_is_kept_under_its_hash():
    v2 = {"contract": "0x" + "e3" * 20, "kind": "native", "version": 2}
    h = "0x" + "9a" * 32
    state = project(
        tx(1, mint(ALICE, 5), stake(ALICE, None, 5, pool_hash=h), **v2),
        tx(2, mint(BOB, 3), stake(BOB, "validator-one", 3, pool_hash="0x" + "01" * 32), **v2),
        tx(3, burn(ALICE, 2), request(ALICE, None, 2, 3 + LOCK, pool_hash=h), **v2),
    )
    assert dict(state.validators) == {(f"hash:{h}", "ETH"): 3, ("validator-one", "ETH"): 3}
    assert positions(state) == {(f"hash:{h}", "ETH"): {ALICE: 3}, ("validator-one", "ETH"): {BOB: 3}}
    assert dict(state.pools)[("alpha", v2["contract"], f"hash:{h}")] == 3


def test_social_undelegate_removes_at_most_what_the_staker_delegated_there():
    feed = {"chain": "social", "contract": "feed", "kind": "social", "asset": "SOCIAL"}

    def social(time: int, action: str, staker: str, points: int) -> list[Event]:
        return tx(time, (f"social_{action}", {"staker": staker, "pool": "validator-one", "amount": points}), **feed)

    state = project(
        social(1, "delegate", ALICE, 10),
        social(2, "delegate", BOB, 5),
        social(3, "undelegate", ALICE, 25),
        social(4, "undelegate", ALICE, 3),
        social(5, "undelegate", CAROL, 1),
    )
    assert dict(state.validators) == {("validator-one", "SOCIAL"): 5}
    assert positions(state) == {("validator-one", "SOCIAL"): {BOB: 5}}
    assert dict(state.delegations) == {("social", BOB, "validator-one"): 5}


def test_an_unstake_beyond_the_pool_total_is_a_fatal_error_naming_the_log():
    state = project(stake_tx(1, ALICE, P, 10), stake_tx(2, ALICE, Q, 5))  # alice holds 15 LST, P holds 10
    with pytest.raises(
        ProjectionError, match=r"of 11 from pool .* only 10, in chain alpha tx 0xalpha3 log 1"
    ) as raised:
        fold(state, tx(3, burn(ALICE, 11), unstake(ALICE, P, 11)))
    assert isinstance(raised.value, FatalError)


def test_fold_leaves_its_input_untouched_and_returns_read_only_mappings():
    before = project(stake_tx(1, ALICE, P, 10))
    snapshot = rows(before)
    after, _ = fold(before, tx(2, move(ALICE, BOB, 4)) + tx(3, burn(BOB, 4), unstake(BOB, P, 4)))
    assert rows(before) == snapshot
    assert rows(after) != snapshot
    with pytest.raises(TypeError):
        after.validators[(P, "ETH")] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        after.positions[(P, "ETH")][ALICE] = 0  # type: ignore[index]


def test_a_batch_is_sorted_before_folding_and_repeated_events_count_once():
    events = stake_tx(1, ALICE, P, 10) + tx(2, burn(ALICE, 4), unstake(ALICE, P, 4))
    state, _ = fold(EMPTY, list(reversed(events)) + events)
    assert dict(state.validators) == {(P, "ETH"): 6}
    assert dict(state.checkpoints) == {"alpha": (2, "alpha", 2, 1, "0xalpha2")}


def test_an_event_older_than_one_already_applied_on_another_chain_is_refused():
    state = project(stake_tx(5, ALICE, P, 10, chain="beta"))
    with pytest.raises(ProjectionError, match="out of canonical order"):
        fold(state, stake_tx(4, BOB, P, 10, chain="alpha"))
    same_time, _ = fold(state, stake_tx(5, BOB, P, 10, chain="gamma"))  # later in order: chain name breaks the tie
    assert dict(same_time.validators) == {(P, "ETH"): 20}


def test_a_feed_keeps_its_own_order_apart_from_the_chains():
    chains = stake_tx(5, ALICE, P, 10, chain="beta")
    points = tx(3, ("social_delegate", {"staker": BOB, "pool": P, "amount": 7}), chain="feed", contract="social:feed",
                kind="social", asset="SOCIAL")  # fmt: skip
    state = project(chains)
    with pytest.raises(ProjectionError, match="out of canonical order"):
        fold(state, points)  # dated before the chains' last event: refused while it counts as a chain
    late, _ = fold(state, points, independent={"feed"})
    assert late == project(chains, points)
    assert dict(late.validators) == {(P, "ETH"): 10, (P, "SOCIAL"): 7}
    again, _ = fold(late, points, independent={"feed"})
    assert again == late  # a replay
    with pytest.raises(ProjectionError, match="out of canonical order"):
        fold(late, stake_tx(4, CAROL, P, 1, chain="alpha"), independent={"feed"})  # the chains' order still holds


def test_checkpoint_is_block_time_then_chain_block_and_log_index():
    a = tx(7, stake(ALICE, P), chain="beta")[0]
    b = tx(7, stake(ALICE, P), chain="alpha")[0]._replace(block_number=99, log_index=3)
    c = tx(6, stake(ALICE, P), chain="zeta")[0]
    assert sorted([a, b, c], key=checkpoint) == [c, b, a]


# --- property tests -----------------------------------------------------------------------------------------------


class Contract(NamedTuple):
    chain: str
    address: str
    kind: str
    version: int
    asset: str


CONTRACTS = (
    Contract("alpha", "0x" + "a1" * 20, "native", 1, "ETH"),
    Contract("alpha", "0x" + "a2" * 20, "erc20", 2, "TKN"),
    Contract("beta", "0x" + "b1" * 20, "erc20", 2, "ETH"),
    Contract("beta", "0x" + "b2" * 20, "native", 1, "TKN"),
    Contract("beta", "0x" + "b3" * 20, "erc721", 1, "NFT"),
)
FUNGIBLE = [i for i, c in enumerate(CONTRACTS) if c.kind != "erc721"]
NFT = next(i for i, c in enumerate(CONTRACTS) if c.kind == "erc721")
STAKERS = [ALICE, BOB, CAROL, DAVE]
HOLDERS = [*STAKERS, "0x" + "e" * 40, "0x" + "f" * 40]  # the last two never stake: they only receive the LST
POOLS = [P, Q, "0x" + "3" * 40]
ASSET_OF = {(c.chain, c.address): c.asset for c in CONTRACTS}


class ContractModel:
    """A tiny simulation of the contracts: emits the logs they would, in their order, and tracks their state."""

    def __init__(self) -> None:
        self.time = 1_000_000
        self.blocks = {"alpha": 0, "beta": 0}
        self.events: list[Event] = []
        self.pools: dict[tuple[str, str, str], int] = defaultdict(int)  # stakingPools per contract
        self.balances: dict[tuple[str, str, str], int] = defaultdict(int)  # balanceOf
        self.queues: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)  # (amount, unlock)
        self.owners: dict[int, str] = {}  # NFT LST owner
        self.token_pool: dict[int, str] = {}
        self.next_token = 1

    def emit(self, c: Contract, logs: list[Log]) -> None:
        if logs:
            self.blocks[c.chain] += 1
            block, h = self.blocks[c.chain], f"0x{c.chain}{self.blocks[c.chain]}"
            for i, (t, f) in enumerate(logs):
                head = (c.chain, 7, c.address, c.kind, c.version, block, h, self.time, h, i, EventType(t), c.asset)
                self.events.append(Event(*head, **f))

    def run(self, action: tuple) -> None:
        name, *args = action
        getattr(self, name)(*args)

    def pick(self, c: Contract, choices: list[str], index: int, table: dict) -> str | None:
        """The index-th (wrapping) of the choices with a non-empty entry in the contract's `table`, if any."""
        live = [x for x in choices if table.get((c.chain, c.address, x))]
        return live[index % len(live)] if live else None

    def contract(self, index: int, table: dict) -> Contract:
        """The index-th (wrapping) fungible contract with a non-empty entry in `table` (any one if none has)."""
        fungible = [CONTRACTS[i] for i in FUNGIBLE]
        live = [c for c in fungible if any(v and k[:2] == (c.chain, c.address) for k, v in table.items())] or fungible
        return live[index % len(live)]

    def wait(self, seconds: int) -> None:
        self.time += seconds

    def stake(self, ci: int, si: int, pi: int, amount: int) -> None:
        c, staker, pool = CONTRACTS[FUNGIBLE[ci]], STAKERS[si], POOLS[pi]
        self.pools[(c.chain, c.address, pool)] += amount
        self.balances[(c.chain, c.address, staker)] += amount
        self.emit(c, [mint(staker, amount), stake(staker, pool, amount)])

    def unstake(self, ci: int, hi: int, wanted: list[tuple[int, int]]) -> None:
        """unstake (one pool) or unstakeMultiple (several) by a holder, clamped to what the contract would allow."""
        c = self.contract(ci, self.balances)
        holder = self.pick(c, HOLDERS, hi, self.balances)
        logs: list[Log] = []
        total, unlock = 0, self.time + LOCK
        for pi, wish in wanted:
            pool = self.pick(c, POOLS, pi, self.pools)
            if holder is None or pool is None:
                break
            pool_key, balance_key = (c.chain, c.address, pool), (c.chain, c.address, holder)
            amount = min(wish, self.pools[pool_key], self.balances[balance_key])
            self.pools[pool_key] -= amount
            self.balances[balance_key] -= amount
            total += amount
            pulled = request(holder, pool, amount, unlock) if c.version == 2 else unstake(holder, pool, amount)
            logs += [burn(holder, amount), pulled]
        if total and c.version == 2:
            self.queues[(c.chain, c.address, holder)].append((total, unlock))
            if len(wanted) > 1:
                logs.append(batch(holder, total, unlock))
        self.emit(c, logs)

    def transfer(self, ci: int, fi: int, ti: int, wish: int) -> None:
        c = self.contract(ci, self.balances)
        sender, receiver = self.pick(c, HOLDERS, fi, self.balances), HOLDERS[ti]
        if sender is not None:
            amount = min(wish, self.balances[(c.chain, c.address, sender)])
            self.balances[(c.chain, c.address, sender)] -= amount
            self.balances[(c.chain, c.address, receiver)] += amount
            self.emit(c, [move(sender, receiver, amount)])

    def withdraw(self, ci: int, hi: int, after: int) -> None:
        """withdraw() by a holder with requests, `after` seconds from now."""
        self.time += after
        c = self.contract(ci, self.queues)
        holder = self.pick(c, HOLDERS, hi, self.queues)
        queue = self.queues[(c.chain, c.address, holder)] if holder else []
        matured = sum(amount for amount, unlock in queue if unlock <= self.time)
        if matured:
            queue[:] = [(amount, unlock) for amount, unlock in queue if unlock > self.time]
            self.emit(c, [withdraw(holder, matured)])

    def nft_stake(self, si: int, pi: int) -> None:
        c, staker, pool, token = CONTRACTS[NFT], STAKERS[si], POOLS[pi], self.next_token
        self.next_token += 1
        self.owners[token], self.token_pool[token] = staker, pool
        self.pools[(c.chain, c.address, pool)] += 1
        self.balances[(c.chain, c.address, staker)] += 1
        self.emit(c, [mint(staker, 1, token), stake(staker, pool, 1, token)])

    def nft_transfer(self, pick: int, ti: int) -> None:
        if self.owners:
            c, token = CONTRACTS[NFT], sorted(self.owners)[pick % len(self.owners)]
            sender, receiver = self.owners[token], HOLDERS[ti]
            self.owners[token] = receiver
            self.balances[(c.chain, c.address, sender)] -= 1
            self.balances[(c.chain, c.address, receiver)] += 1
            self.emit(c, [move(sender, receiver, 1, token)])

    def nft_unstake(self, pick: int) -> None:
        if self.owners:
            c, token = CONTRACTS[NFT], sorted(self.owners)[pick % len(self.owners)]
            holder, pool = self.owners.pop(token), self.token_pool.pop(token)
            self.pools[(c.chain, c.address, pool)] -= 1
            self.balances[(c.chain, c.address, holder)] -= 1
            self.emit(c, [burn(holder, 1, token), unstake(holder, pool, 1, token)])


_i = st.integers
ACTIONS = st.one_of(
    st.tuples(st.just("stake"), _i(0, 3), _i(0, 3), _i(0, 2), _i(1, 1000)),
    st.tuples(
        st.just("unstake"), _i(0, 3), _i(0, 5), st.lists(st.tuples(_i(0, 2), _i(1, 1500)), min_size=1, max_size=3)
    ),
    st.tuples(st.just("transfer"), _i(0, 3), _i(0, 5), _i(0, 5), _i(1, 1000)),
    st.tuples(st.just("withdraw"), _i(0, 3), _i(0, 5), st.sampled_from([0, LOCK // 2, LOCK])),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 86400, LOCK])),
    st.tuples(st.just("nft_stake"), _i(0, 3), _i(0, 2)),
    st.tuples(st.just("nft_transfer"), _i(0, 20), _i(0, 5)),
    st.tuples(st.just("nft_unstake"), _i(0, 20)),
)


def simulate(actions: list[tuple]) -> ContractModel:
    model = ContractModel()
    for action in actions:
        model.run(action)
    return model


def reference_positions(events: list[Event]) -> dict[tuple[str, str], dict[str, int]]:
    """Positions by the SPEC's words, with exact fractions: own position first, the excess pro rata to the others."""
    pools: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in in_order(events):
        stakers = pools[(e.pool, e.asset)]
        if e.event_type == "stake":
            stakers[e.staker] += e.amount
        elif e.event_type in ("unstake", "unstake_request"):
            own = min(stakers[e.staker], e.amount)
            stakers[e.staker] -= own
            excess, others = e.amount - own, {s: n for s, n in stakers.items() if n and s != e.staker}
            exact = {s: Fraction(excess * n, sum(others.values())) for s, n in others.items()}
            cut = {s: math.floor(x) for s, x in exact.items()}
            ranked = sorted(others, key=lambda s: (cut[s] - exact[s], s))
            for s in others:
                stakers[s] -= cut[s] + (s in ranked[: excess - sum(cut.values())])
    return {key: {s: n for s, n in stakers.items() if n} for key, stakers in pools.items() if any(stakers.values())}


def rows(state: ProjectionState) -> dict[str, dict]:
    """Every projection flattened to key -> value, as the runner's tables would hold them."""
    return {
        "validators": dict(state.validators),
        "pools": dict(state.pools),
        "positions": {(s, v, a): n for (v, a), stakers in state.positions.items() for s, n in stakers.items()},
        "delegations": dict(state.delegations),
        "balances": dict(state.balances),
        "tokens": {
            **{(*k, "owner"): v for k, v in state.token_owners.items()},
            **{(*k, "pool"): v for k, v in state.token_pools.items()},
        },
        "withdrawals": dict(state.withdrawals),
        "checkpoints": dict(state.checkpoints),
    }


def expected_changes(before: ProjectionState, after: ProjectionState) -> dict[str, set]:
    old, new = rows(before), rows(after)
    diff = {
        name: {k for k in old[name].keys() | new[name].keys() if old[name].get(k) != new[name].get(k)} for name in old
    }
    diff["tokens"] = {k[:3] for k in diff["tokens"]}
    return diff


def assert_invariants(state: ProjectionState) -> None:
    assert set(state.positions) == set(state.validators)
    for key, stakers in state.positions.items():
        assert all(amount > 0 for amount in stakers.values())
        assert sum(stakers.values()) == state.validators[key]
    per_validator: dict[tuple[str, str], int] = defaultdict(int)
    for (chain, contract, pool), amount in state.pools.items():
        per_validator[(pool, ASSET_OF[(chain, contract)])] += amount
    assert per_validator == dict(state.validators)
    assert all(amount > 0 for amount in state.balances.values())
    assert all(holder != ZERO for _, _, holder in state.balances)


def split(events: list[Event], cuts: set[int]) -> list[list[Event]]:
    bounds = [0, *sorted(cuts), len(events)]
    return [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def in_order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.block_time, e.chain, e.block_number, e.log_index))


@pytest.fixture(params=[draft_module.VECTOR_AT, 1], ids=["python-pools", "limb-pools"])
def pools_as(request):
    """Run a property with pools kept as Python integers, then with every pool a pro rata touches as limbs."""
    saved = draft_module.VECTOR_AT
    draft_module.VECTOR_AT = request.param
    yield request.param
    draft_module.VECTOR_AT = saved


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=10, max_size=60), data=st.data())
def test_any_split_into_batches_folds_to_the_same_state_and_replays_change_nothing(pools_as, actions, data):
    events = in_order(simulate(actions).events)
    whole, untracked = fold(EMPTY, data.draw(st.permutations(events)), changes=False)  # as `reproject` folds
    assert not untracked
    batches = split(events, data.draw(st.sets(st.integers(0, len(events)), max_size=6)))
    state = EMPTY
    for n, chunk in enumerate(batches):
        before = state
        state, changes = fold(state, data.draw(st.permutations(chunk)))
        assert_invariants(state)
        diff = expected_changes(before, state)
        assert {name: set(getattr(changes, name)) for name in diff} == diff
        replayed, nothing = fold(state, batches[data.draw(st.integers(0, n))])
        assert replayed == state
        assert not nothing
    assert state == whole


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=10, max_size=60))
def test_balances_pools_positions_and_withdrawals_match_the_contract_model(pools_as, actions):
    model = simulate(actions)
    state, _ = fold(EMPTY, model.events)
    assert_invariants(state)
    assert dict(state.balances) == {k: v for k, v in model.balances.items() if v}
    assert dict(state.pools) == {k: v for k, v in model.pools.items() if v}
    validators: dict[tuple[str, str], int] = defaultdict(int)
    for (chain, contract, pool), amount in model.pools.items():
        validators[(pool, ASSET_OF[(chain, contract)])] += amount
    assert dict(state.validators) == {k: v for k, v in validators.items() if v}
    assert positions(state) == reference_positions(model.events)
    pending: dict[tuple[str, str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for key, queue in model.queues.items():
        for amount, unlock in queue:
            pending[key][unlock] += amount
    assert dict(state.withdrawals) == {
        k: tuple(Pending(a, u) for u, a in sorted(q.items())) for k, q in pending.items() if q
    }
    nft = CONTRACTS[NFT]
    assert dict(state.token_owners) == {(nft.chain, nft.address, t): owner for t, owner in model.owners.items()}
    assert dict(state.token_pools) == {(nft.chain, nft.address, t): pool for t, pool in model.token_pool.items()}


@settings(max_examples=400)
@given(
    holdings=st.dictionaries(
        st.from_regex(r"0x[0-9a-f]{3}", fullmatch=True),
        st.one_of(st.integers(1, 10**6), st.integers(1, 10), st.integers(10**18, 10**24)),
        min_size=1,
        max_size=60,
    ),
    data=st.data(),
)
def test_pro_rata_shares_are_floor_or_ceiling_of_the_exact_share_by_largest_remainder(holdings, data):
    exclude = data.draw(st.sampled_from([None, *holdings]))
    others = {h: held for h, held in holdings.items() if h != exclude}
    total = sum(others.values())
    amount = data.draw(st.one_of(st.integers(0, total), st.integers(0, min(total, 5))))  # often a few units
    exact = {h: Fraction(amount * held, total) for h, held in others.items()} if total else {}
    floors = {h: math.floor(x) for h, x in exact.items()}
    by_remainder = sorted(others, key=lambda h: (-(exact[h] - floors[h]), h))
    expected = {h: floors[h] + (1 if h in by_remainder[: amount - sum(floors.values())] else 0) for h in others}
    taken = take_pro_rata(holdings, amount, exclude=exclude)
    assert taken == {h: n for h, n in expected.items() if n}
    assert sum(taken.values()) == amount
    assert all(taken.get(h, 0) <= held for h, held in others.items())


def test_taking_more_than_the_others_hold_is_refused():
    with pytest.raises(ValueError, match="cannot take 4 from holdings totalling 3"):
        take_pro_rata({ALICE: 5, BOB: 3}, 4, exclude=ALICE)


def test_tron_mints_and_burns_use_the_base58_zero_address():
    from indexer.config import tron_address

    zero = tron_address("0x" + "00" * 20)
    holder = "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"
    base = dict(chain="tron", chain_id=1, contract="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", contract_kind="native",
                contract_version=1, block_hash="0x", block_time=5, asset="TRX")  # fmt: skip
    mint = Event(**base, block_number=1, tx_hash="0x1", log_index=0, event_type=EventType.TRANSFER,
                 staker=zero, counterparty=holder, amount=7)  # fmt: skip
    burn = Event(**base, block_number=2, tx_hash="0x2", log_index=0, event_type=EventType.TRANSFER,
                 staker=holder, counterparty=zero, amount=3)  # fmt: skip
    state, _ = fold(EMPTY, [mint, burn])
    assert dict(state.balances) == {("tron", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", holder): 4}


def test_erc721_v2_nfts_count_one_each_in_epoch_timelines_until_their_request():
    """Epochs replay the fold: an ERC-721 v2 NFT counts 1 (x weight) from its stake until its unstake request."""
    from indexer.epochs.close import position_timelines

    nft = {"contract": "0x" + "fe" * 20, "kind": "erc721", "version": 2, "asset": "NFT"}
    events = [
        *tx(100, mint(ALICE, 1, 3), stake(ALICE, P, 1, 3), **nft),
        *tx(200, mint(ALICE, 1, 4), stake(ALICE, P, 1, 4), **nft),
        *tx(300, burn(ALICE, 1, 3), request(ALICE, P, 1, 300 + LOCK, token_id=3), **nft),
        *tx(300 + LOCK, withdraw(ALICE, 1, 3), **nft),
    ]
    assert position_timelines(events) == {(ALICE, P, "NFT"): [(100, 1), (200, 2), (300, 1)]}

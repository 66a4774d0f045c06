"""The simulated contracts' state and how one call changes it, exactly as contracts/src/ does (SPEC section 2).

`apply` checks a call the way the Solidity `require`s do, then changes the state
and returns the logs it emits, in emission order, each with the row the indexer
must store for it (None for logs it must ignore: Approval, the deposit token's
own transfers). Rows are written from the call's arguments, never by decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eth_hash.auto import keccak

from indexer.decode import signatures as sig

LOCK_SECONDS = 3 * 24 * 3600
ZERO = "0x" + "00" * 20
TOKEN = "0x" + "d0" * 20  # the ERC-20 staked by the erc20 contracts
NFT = "0x" + "d1" * 20  # the NFT collection staked by both erc721 contracts
BATCHER = "0x" + "b0" * 20  # forwards native v2 stakes and unstakes; holds the LST they mint
APPROVAL = sig.topic("Approval(address,address,uint256)")


class ContractInfo(NamedTuple):
    name: str
    kind: str
    version: int
    address: str
    asset: str
    decimals: int


CONTRACTS = (
    ContractInfo("klyeth_v1", "native", 1, "0x" + "c1" * 20, "ETH", 18),
    ContractInfo("klyeth", "native", 2, "0x" + "c2" * 20, "ETH", 18),
    ContractInfo("klytoken_v1", "erc20", 1, "0x" + "c3" * 20, "TKN", 18),
    ContractInfo("klytoken", "erc20", 2, "0x" + "c4" * 20, "TKN", 18),
    ContractInfo("klynft", "erc721", 1, "0x" + "c5" * 20, "NFT", 0),
    ContractInfo("klynft_v2", "erc721", 2, "0x" + "c6" * 20, "NFT", 0),
)
BY_ADDRESS = {c.address: c for c in CONTRACTS}
STAKERS = tuple("0x" + f"{0x11 * i:02x}" * 20 for i in range(1, 6))  # EOAs that stake
OUTSIDERS = ("0x" + "e1" * 20, "0x" + "e2" * 20)  # EOAs that only ever receive LST (and may unstake it)
ADDRESS_POOLS = ("0x" + "a1" * 20, "0x" + "a2" * 20, "0x" + "a3" * 20)
STRING_POOLS = ("validator-one", "validator-two", "validator-three")
POOL_HASHES = {name: "0x" + keccak(name.encode()).hex() for name in STRING_POOLS}
NFT_IDS = tuple(range(10))  # token 0 included: a v2 request for it can never be withdrawn


class Row(NamedTuple):
    """The event-specific columns of the `events` row a log must become."""

    event_type: str
    staker: str | None
    counterparty: str | None = None
    pool: str | None = None
    pool_hash: str | None = None
    amount: int | None = None
    token_id: int | None = None
    unlock_time: int | None = None


class Emitted(NamedTuple):
    address: str
    topics: tuple[str, ...]
    data: str
    row: Row | None  # None: a log the indexer does not store


@dataclass(frozen=True, slots=True)
class Call:
    """One transaction's call. `fn` batchStake/batchUnstake go through the batcher (msg.sender = BATCHER)."""

    contract: str
    sender: str  # the EOA signing the transaction
    fn: str  # stake | unstake | unstakeMultiple | transfer | withdraw | approve | batchStake | batchUnstake
    args: tuple[Any, ...] = ()

    @property
    def caller(self) -> str:
        """msg.sender as the staking contract sees it."""
        return BATCHER if self.fn.startswith("batch") else self.sender


@dataclass(slots=True)
class ContractState:
    """One staking contract: pools, LST, withdrawal requests (v2) as the contract's storage holds them."""

    info: ContractInfo
    pools: dict[str, int] = field(default_factory=dict)  # fungible: pool -> stakingPools(pool)
    token_pool: dict[int, str] = field(default_factory=dict)  # erc721: staked token id -> its pool
    balances: dict[str, int] = field(default_factory=dict)  # fungible LST balanceOf (non-zero only)
    owners: dict[int, str] = field(default_factory=dict)  # erc721 LST ownerOf
    requests: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (amount or token id, unlock)
    supply: int = 0  # fungible totalSupply

    @property
    def nft(self) -> bool:
        return self.info.kind == "erc721"

    def copy(self) -> ContractState:
        return ContractState(
            self.info,
            dict(self.pools),
            dict(self.token_pool),
            dict(self.balances),
            dict(self.owners),
            {holder: list(entries) for holder, entries in self.requests.items()},
            self.supply,
        )

    def staked_tokens(self, pool: str) -> list[int]:
        """getStakedTokens(pool), sorted."""
        return sorted(token for token, where in self.token_pool.items() if where == pool)

    def balance_of(self, holder: str) -> int:
        if self.nft:
            return sum(1 for owner in self.owners.values() if owner == holder)
        return self.balances.get(holder, 0)

    def holders(self) -> list[str]:
        """LST holders with a non-zero balance, sorted."""
        return sorted(set(self.owners.values()) if self.nft else self.balances)

    def pending(self, holder: str) -> list[tuple[int, int]]:
        """withdrawalRequests entries that do not read back as (0, 0)."""
        return [entry for entry in self.requests.get(holder, ()) if entry != (0, 0)]

    def withdrawable(self, holder: str, now: int) -> list[int]:
        """Indexes `withdraw()` settles at time `now` (non-zero amount or token id, unlocked)."""
        return [i for i, (value, unlock) in enumerate(self.requests.get(holder, ())) if value and now >= unlock]


@dataclass(slots=True)
class WorldState:
    """Every contract's state; a copy shares the contracts until `mutable` copies one (copy on write)."""

    contracts: dict[str, ContractState]
    nft_owner: dict[int, str]  # the NFT collection's ownerOf (an EOA, or the staking contract holding it)
    _owned: set[str] = field(default_factory=set)  # contracts this state may change in place

    @classmethod
    def genesis(cls) -> WorldState:
        return cls(
            {c.address: ContractState(c) for c in CONTRACTS},
            {token: STAKERS[token % len(STAKERS)] for token in NFT_IDS},
        )

    def copy(self) -> WorldState:
        return WorldState(dict(self.contracts), dict(self.nft_owner))

    def mutable(self, address: str) -> ContractState:
        """The contract's state, copied first if another WorldState may share it."""
        if address not in self._owned:
            self.contracts[address] = self.contracts[address].copy()
            self._owned.add(address)
        return self.contracts[address]


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def _word(value: int) -> str:
    return f"0x{value:064x}"


def _pool_topic(pool: str) -> tuple[str, str | None]:
    """The topic a pool is logged as, and the pool_hash column (string pools only)."""
    if pool.startswith("0x"):
        return _topic(pool), None
    hashed = POOL_HASHES.get(pool) or "0x" + keccak(pool.encode()).hex()
    return hashed, hashed


def _transfer(c: ContractState, sender: str, receiver: str, value: int) -> Emitted:
    """The LST's own Transfer (the row holds sender as staker, receiver as counterparty)."""
    if c.nft:
        topics = (sig.TRANSFER, _topic(sender), _topic(receiver), _word(value))
        return Emitted(c.info.address, topics, "0x", Row("transfer", sender, receiver, amount=1, token_id=value))
    topics = (sig.TRANSFER, _topic(sender), _topic(receiver))
    return Emitted(c.info.address, topics, _word(value), Row("transfer", sender, receiver, amount=value))


def _foreign_transfer(asset: str, sender: str, receiver: str, value: int) -> Emitted:
    """A Transfer of the deposit token or NFT collection: another address, not followed."""
    if asset == NFT:
        return Emitted(NFT, (sig.TRANSFER, _topic(sender), _topic(receiver), _word(value)), "0x", None)
    return Emitted(TOKEN, (sig.TRANSFER, _topic(sender), _topic(receiver)), _word(value), None)


def _staking_log(c: ContractState, kind: str, who: str, pool: str, value: int, unlock: int | None) -> Emitted:
    """StakeOccured / UnstakeOccured / UnstakeRequested."""
    pool_topic, pool_hash = _pool_topic(pool)
    if kind == "stake":
        topic0 = sig.STAKE_STRING_POOL if pool_hash else sig.STAKE_ADDRESS_POOL
    elif kind == "unstake":
        topic0 = sig.UNSTAKE
    else:
        topic0 = sig.UNSTAKE_REQUEST_STRING_POOL if pool_hash else sig.UNSTAKE_REQUEST_ADDRESS_POOL
    amount, token_id = (1, value) if c.nft else (value, None)
    data = "0x" if unlock is None else _word(unlock)
    row = Row(kind, who, None, pool, pool_hash, amount, token_id, unlock)
    return Emitted(c.info.address, (topic0, _topic(who), pool_topic, _word(value)), data, row)


def _withdrawal(c: ContractState, who: str, value: int) -> Emitted:
    amount, token_id = (1, value) if c.nft else (value, None)
    topics = (sig.WITHDRAWAL, _topic(who), _word(value))
    return Emitted(c.info.address, topics, "0x", Row("withdrawal", who, amount=amount, token_id=token_id))


def _mint(c: ContractState, holder: str, value: int) -> Emitted:
    if c.nft:
        c.owners[value] = holder
    else:
        c.balances[holder] = c.balances.get(holder, 0) + value
        c.supply += value
    return _transfer(c, ZERO, holder, value)


def _burn(c: ContractState, holder: str, value: int) -> Emitted:
    if c.nft:
        del c.owners[value]
    else:
        left = c.balances.get(holder, 0) - value
        if left:
            c.balances[holder] = left
        else:
            c.balances.pop(holder, None)
        c.supply -= value
    return _transfer(c, holder, ZERO, value)


def _stake(state: WorldState, c: ContractState, caller: str, pool: str, value: int) -> list[Emitted]:
    out = []
    if c.nft:
        state.nft_owner[value] = c.info.address
        out.append(_foreign_transfer(NFT, caller, c.info.address, value))
        c.token_pool[value] = pool
    else:
        if c.info.kind == "erc20":
            out.append(_foreign_transfer(TOKEN, caller, c.info.address, value))
        c.pools[pool] = c.pools.get(pool, 0) + value
    out.append(_mint(c, caller, value))
    out.append(_staking_log(c, "stake", caller, pool, value, None))
    return out


def _unstake(state: WorldState, c: ContractState, caller: str, pool: str, value: int, unlock: int) -> list[Emitted]:
    """One pool's unstake, already checked; `unlock` is used by v2 only."""
    if c.nft:
        out = [_burn(c, caller, value)]
        del c.token_pool[value]
    else:
        c.pools[pool] = c.pools.get(pool, 0) - value  # a zero-amount unstake may name a pool never staked in
        out = [_burn(c, caller, value)]
    if c.info.version == 2:
        out.append(_staking_log(c, "unstake_request", caller, pool, value, unlock))
        return out
    if c.nft:
        state.nft_owner[value] = caller
        out.append(_foreign_transfer(NFT, c.info.address, caller, value))
    out.append(_staking_log(c, "unstake", caller, pool, value, None))
    if c.info.kind == "erc20":
        out.append(_foreign_transfer(TOKEN, c.info.address, caller, value))
    return out


def _can_unstake(c: ContractState, caller: str, pools: tuple[str, ...], values: tuple[int, ...]) -> bool:
    """The `require`s of unstaking `values` from `pools` in turn."""
    if c.nft:
        return all(c.token_pool.get(t) == p and c.owners.get(t) == caller for p, t in zip(pools, values, strict=True))
    left, balance = dict(c.pools), c.balances.get(caller, 0)
    for pool, value in zip(pools, values, strict=True):
        if value < 0 or left.get(pool, 0) < value or balance < value:
            return False
        left[pool] = left.get(pool, 0) - value
        balance -= value
    return True


def apply(state: WorldState, call: Call, now: int) -> list[Emitted] | None:
    """The logs `call` emits at block time `now`, having changed `state`; None (state untouched) if it reverts."""
    c = state.mutable(call.contract)  # a revert leaves it equal, if copied
    caller, fn, args = call.caller, call.fn, call.args
    v2 = c.info.version == 2
    if fn in ("stake", "batchStake"):
        pools, values = ((args[0],), (args[1],)) if fn == "stake" else args
        if not pools or len(pools) != len(values) or (fn == "batchStake" and c.info != CONTRACTS[1]):
            return None
        if c.nft and any(state.nft_owner.get(token) != caller for token in values):
            return None
        if not c.nft and any(value <= 0 for value in values):
            return None
        return [log for pool, value in zip(pools, values, strict=True) for log in _stake(state, c, caller, pool, value)]
    if fn in ("unstake", "batchUnstake", "unstakeMultiple"):
        pools, values = ((args[0],), (args[1],)) if fn != "unstakeMultiple" else args
        if fn == "unstakeMultiple" and (c.nft or not pools or len(pools) != len(values)):
            return None
        if fn == "batchUnstake" and c.info != CONTRACTS[1]:
            return None
        if not _can_unstake(c, caller, pools, values):
            return None
        if fn == "unstakeMultiple" and c.info.kind == "erc20" and not v2 and sum(values) == 0:
            return None  # "nothing to unstake"
        unlock = now + LOCK_SECONDS
        if v2:  # one request per call: for the total of an unstakeMultiple
            c.requests.setdefault(caller, []).append((sum(values), unlock))
        out = [
            log
            for pool, value in zip(pools, values, strict=True)
            for log in _unstake(state, c, caller, pool, value, unlock)
        ]
        if fn == "unstakeMultiple" and v2:
            topics = (sig.UNSTAKE_MULTIPLE_REQUESTED, _topic(caller), _word(sum(values)))
            row = Row("unstake_batch", caller, amount=sum(values), unlock_time=unlock)
            out.append(Emitted(c.info.address, topics, _word(unlock), row))
        return out
    if fn == "transfer":
        receiver, value = args
        if receiver == ZERO or (c.owners.get(value) != caller if c.nft else c.balances.get(caller, 0) < value):
            return None
        if c.nft:
            c.owners[value] = receiver
        elif value:
            _burn(c, caller, value)
            _mint(c, receiver, value)
        return [_transfer(c, caller, receiver, value)]
    if fn == "withdraw":
        ready = c.withdrawable(caller, now) if v2 else []
        if not ready:
            return None  # "nothing to withdraw"
        entries = c.requests[caller]
        out = []
        for i in ready:
            if c.nft:
                state.nft_owner[entries[i][0]] = caller
                out.append(_foreign_transfer(NFT, c.info.address, caller, entries[i][0]))
                out.append(_withdrawal(c, caller, entries[i][0]))
        total = sum(entries[i][0] for i in ready)
        for i in ready:
            entries[i] = (0, 0)
        if not c.nft:
            if c.info.kind == "erc20":
                out.append(_foreign_transfer(TOKEN, c.info.address, caller, total))
            out.append(_withdrawal(c, caller, total))
        return out
    if fn == "approve":
        spender, value = args
        if c.nft:
            if c.owners.get(value) != caller:
                return None
            return [Emitted(c.info.address, (APPROVAL, _topic(caller), _topic(spender), _word(value)), "0x", None)]
        return [Emitted(c.info.address, (APPROVAL, _topic(caller), _topic(spender)), _word(value), None)]
    raise ValueError(f"unknown call {fn}")

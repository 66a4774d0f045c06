"""Drive real transactions against a Deployment on an unlocked dev chain (anvil)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint, TxReceipt

from indexer.localchain import artifacts
from indexer.localchain.deploy import Deployment

ETHER = 10**18
DAY = 86_400
LOCK_SECONDS = 3 * DAY

#: Deployment field -> artifact name, for every contract the Driver talks to.
ARTIFACTS = {
    "native_v1": "NativeStakingV1",
    "native_v2": "NativeStakingV2",
    "erc20_v1": "Erc20StakingV1",
    "erc20_v2": "Erc20StakingV2",
    "erc721_v1": "Erc721StakingV1",
    "token": "TestToken",
    "nft": "TestNft",
    "batcher": "StakeBatcher",
    "erc721_v2": "Erc721StakingV2",
}
STAKING = ("native_v1", "native_v2", "erc20_v1", "erc20_v2", "erc721_v1", "erc721_v2")
V2 = ("native_v2", "erc20_v2", "erc721_v2")
NFT = ("erc721_v1", "erc721_v2")


class TransactionReverted(RuntimeError):
    """A transaction reverted (at gas estimation, with the reason, or when mined)."""

    def __init__(self, message: str, receipt: TxReceipt | None = None) -> None:
        """Keep the receipt when the transaction was mined."""
        super().__init__(message)
        self.receipt = receipt


class Driver:
    """Sends staking traffic from anvil's unlocked accounts and returns the receipts."""

    def __init__(self, w3: AsyncWeb3, deployment: Deployment, accounts: Sequence[str]) -> None:
        """Wrap `w3`; `accounts` are unlocked node accounts (see `Driver.create`)."""
        self.w3 = w3
        self.deployment = deployment
        self.accounts = [w3.to_checksum_address(a) for a in accounts]
        self.tx_count = 0
        self._contracts: dict[str, AsyncContract] = {
            field: w3.eth.contract(address=w3.to_checksum_address(getattr(deployment, field)), abi=artifacts.abi(name))
            for field, name in ARTIFACTS.items()
        }
        self._errors: dict[str, dict[str, Any]] = {
            "0x" + keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")[:4].hex(): e
            for name in ARTIFACTS.values()
            for e in artifacts.abi(name)
            if e["type"] == "error"
        }

    @classmethod
    async def create(cls, w3: AsyncWeb3, deployment: Deployment) -> Driver:
        """A Driver using every account the node reports (`eth_accounts`)."""
        return cls(w3, deployment, await w3.eth.accounts)

    def contract(self, name: str) -> AsyncContract:
        """The web3 contract for a Deployment field name (native_v1 ... batcher)."""
        try:
            return self._contracts[name]
        except KeyError:
            raise ValueError(f"unknown contract {name!r}; expected one of {', '.join(ARTIFACTS)}") from None

    async def send(self, call: AsyncContractFunction, sender: str, value: int = 0) -> TxReceipt:
        """Send `call` from `sender` via eth_sendTransaction; wait for the receipt; raise on revert."""
        tx: dict[str, Any] = {"from": self.w3.to_checksum_address(sender)}
        if value:
            tx["value"] = value
        label = f"{call.address[:10]}.{call.fn_name}"
        try:
            tx_hash = await call.transact(tx)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise TransactionReverted(f"{label} reverted: {self._explain(exc)}") from exc
        self.tx_count += 1
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise TransactionReverted(f"{label} reverted in block {receipt['blockNumber']}", receipt)
        return receipt

    def _explain(self, exc: ContractLogicError) -> str:
        """The revert reason, with custom errors (e.g. OpenZeppelin's) decoded by name."""
        data = exc.data if isinstance(exc.data, str) else ""
        error = self._errors.get(data[:10])
        if error is None:
            return str(exc.message)
        types = [i["type"] for i in error["inputs"]]
        try:
            values = abi_decode(types, bytes.fromhex(data[10:]))
        except (DecodingError, ValueError):  # undecodable arguments: show the name only
            return f"{error['name']}(...)"
        return f"{error['name']}({', '.join(str(v) for v in values)})"

    async def rpc(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call (anvil/evm_* methods); raises on an error answer."""
        response = await self.w3.provider.make_request(RPCEndpoint(method), params)
        if response.get("error"):
            raise RuntimeError(f"{method}: {response['error']}")
        return response.get("result")

    def _pool(self, contract: str, pool: str) -> str:
        """The pool argument as the contract takes it: a string id (native v2) or a checksum address."""
        return pool if contract == "native_v2" else self.w3.to_checksum_address(pool)

    def _staking(self, contract: str) -> AsyncContract:
        """A staking contract by field name."""
        if contract not in STAKING:
            raise ValueError(f"{contract!r} is not a staking contract; expected one of {', '.join(STAKING)}")
        return self._contracts[contract]

    async def stake(self, contract: str, staker: str, pool: str, amount: int) -> TxReceipt:
        """Stake `amount` (tokenId for erc721) to `pool`; mints and approves the asset first for erc20/erc721."""
        staking = self._staking(contract)
        target = self._pool(contract, pool)
        if contract.startswith("native"):
            return await self.send(staking.functions.stake(target), staker, value=amount)
        if contract.startswith("erc20"):
            token = self._contracts["token"]
            await self.send(token.functions.mint(self.w3.to_checksum_address(staker), amount), staker)
            await self.send(token.functions.approve(staking.address, amount), staker)
        else:
            nft = self._contracts["nft"]
            owner = await self._nft_owner(amount)
            if owner is None:
                await self.send(nft.functions.mint(self.w3.to_checksum_address(staker), amount), staker)
            elif owner != staker.lower():
                raise ValueError(f"NFT {amount} belongs to {owner}, not {staker}")
            await self.send(nft.functions.approve(staking.address, amount), staker)
        return await self.send(staking.functions.stake(target, amount), staker)

    async def unstake(self, contract: str, holder: str, pool: str, amount: int) -> TxReceipt:
        """Unstake `amount` (tokenId for erc721) of `holder`'s LST from `pool`."""
        staking = self._staking(contract)
        return await self.send(staking.functions.unstake(self._pool(contract, pool), amount), holder)

    async def unstake_multiple(
        self, contract: str, holder: str, pools: Sequence[str], amounts: Sequence[int]
    ) -> TxReceipt:
        """unstakeMultiple(pools, amounts) on a native or erc20 contract."""
        if contract in NFT:
            raise ValueError(f"{contract} has no unstakeMultiple")
        staking = self._staking(contract)
        targets = [self._pool(contract, p) for p in pools]
        return await self.send(staking.functions.unstakeMultiple(targets, list(amounts)), holder)

    async def withdraw(self, contract: str, holder: str) -> TxReceipt:
        """withdraw() the holder's matured requests on a v2 contract."""
        if contract not in V2:
            raise ValueError(f"{contract!r} has no withdraw(); expected one of {', '.join(V2)}")
        return await self.send(self._staking(contract).functions.withdraw(), holder)

    async def transfer_lst(self, contract: str, sender: str, receiver: str, amount: int) -> TxReceipt:
        """Transfer `amount` LST (tokenId for erc721) from `sender` to `receiver`."""
        staking = self._staking(contract)
        to = self.w3.to_checksum_address(receiver)
        if contract in NFT:
            call = staking.functions.transferFrom(self.w3.to_checksum_address(sender), to, amount)
        else:
            call = staking.functions.transfer(to, amount)
        return await self.send(call, sender)

    async def withdrawal_requests(self, contract: str, staker: str) -> list[tuple[int, int]]:
        """Every `withdrawalRequests(staker, i)` entry of a v2 contract, read until the call reverts (no length)."""
        if contract not in V2:
            raise ValueError(f"{contract!r} has no withdrawalRequests; expected one of {', '.join(V2)}")
        getter = self._staking(contract).functions.withdrawalRequests
        entries: list[tuple[int, int]] = []
        while True:
            try:
                value, unlock = await getter(self.w3.to_checksum_address(staker), len(entries)).call()
            except ContractLogicError:
                return entries
            entries.append((int(value), int(unlock)))

    async def staked_tokens(self, contract: str, pool: str) -> list[int]:
        """`getStakedTokens(pool)` of an ERC-721 contract."""
        if contract not in NFT:
            raise ValueError(f"{contract!r} has no getStakedTokens; expected one of {', '.join(NFT)}")
        call = self._staking(contract).functions.getStakedTokens(self.w3.to_checksum_address(pool))
        return [int(t) for t in await call.call()]

    async def pool_size(self, contract: str, pool: str) -> int:
        """What `pool` holds on a staking contract: `stakingPools(pool)`, or the number of NFTs staked in it."""
        if contract in NFT:
            return len(await self.staked_tokens(contract, pool))
        return int(await self._staking(contract).functions.stakingPools(self._pool(contract, pool)).call())

    async def _nft_owner(self, token_id: int) -> str | None:
        """The lower-case owner of test NFT `token_id`, or None when it was never minted (or is burnt)."""
        try:
            return str(await self._contracts["nft"].functions.ownerOf(token_id).call()).lower()
        except ContractLogicError:
            return None

    async def stake_via_batcher_v2(self, staker: str, pools: Sequence[str], amounts: Sequence[int]) -> TxReceipt:
        """Native v2 stakes forwarded by StakeBatcher (top-level calldata is the batcher's; it holds the LST)."""
        call = self._contracts["batcher"].functions.stakeNativeV2(
            self._contracts["native_v2"].address, list(pools), list(amounts)
        )
        return await self.send(call, staker, value=sum(amounts))

    async def unstake_via_batcher_v2(self, sender: str, pool: str, amount: int) -> TxReceipt:
        """Native v2 unstake of LST held by StakeBatcher, forwarded by it."""
        call = self._contracts["batcher"].functions.unstakeNativeV2(self._contracts["native_v2"].address, pool, amount)
        return await self.send(call, sender)

    async def stake_many_native_v1(self, sender: str, pools: Sequence[str], amount_each: int, rounds: int) -> TxReceipt:
        """`rounds` x len(pools) native v1 stakes in one tx via StakeBatcher (~13k gas each: <= ~2,000 a tx)."""
        call = self._contracts["batcher"].functions.stakeManyNativeV1(
            self._contracts["native_v1"].address,
            [self.w3.to_checksum_address(p) for p in pools],
            amount_each,
            rounds,
        )
        return await self.send(call, sender, value=amount_each * len(pools) * rounds)

    async def stake_many_erc20_v1(self, sender: str, pool: str, amount_each: int, count: int) -> TxReceipt:
        """`count` erc20 v1 stakes in one transaction; mints the tokens to StakeBatcher first (~10k gas each)."""
        batcher = self._contracts["batcher"]
        token = self._contracts["token"]
        await self.send(token.functions.mint(batcher.address, amount_each * count), sender)
        call = batcher.functions.stakeManyErc20V1(
            self._contracts["erc20_v1"].address,
            token.address,
            self.w3.to_checksum_address(pool),
            amount_each,
            count,
        )
        return await self.send(call, sender)

    async def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward by `seconds` and mine a block at the new time."""
        await self.rpc("evm_increaseTime", [seconds])
        await self.rpc("evm_mine", [])

    async def mine(self, n: int = 1) -> None:
        """Mine `n` empty blocks."""
        await self.rpc("anvil_mine", [hex(n)])

    async def fresh_token_ids(self, n: int, start: int = 1) -> list[int]:
        """The `n` smallest NFT token ids >= `start` that were never minted."""
        found: list[int] = []
        token_id = start
        while len(found) < n:
            if await self._nft_owner(token_id) is None:
                found.append(token_id)
            token_id += 1
        return found


async def realistic_mix(driver: Driver, seed: int = 7) -> int:
    """Plausible traffic over all six contracts (stakes, unstakes, LST transfers, withdrawals); returns txs sent.

    Needs 19+ accounts: 1-5 stake, 6 only receives LST, 16-18 are the address pools. On the ERC-721 v2
    contract NFT 0 is staked and its unstake requested: the real contract never returns it, so that
    request stays pending. After the withdrawals each v2 contract gets one more request that has not
    matured yet, so some requests are settled and others are left.
    """
    rng = random.Random(seed)
    start = driver.tx_count
    accounts = driver.accounts
    stakers = accounts[1:6]
    outsider = accounts[6]  # never stakes; receives LST and unstakes it
    validators = accounts[16:19]  # address pools
    names = ["validator-one", "validator-two", "validator-three"]

    def amount() -> int:
        """1 to 50 ether, in 0.001 steps."""
        return rng.randint(1_000, 50_000) * 10**15

    async def balance(contract: str, holder: str) -> int:
        """LST balance."""
        return int(await driver.contract(contract).functions.balanceOf(holder).call())

    # Stakes: every staker into two pools on each fungible contract.
    for contract in ("native_v1", "erc20_v1", "erc20_v2"):
        for staker in stakers[:4]:
            for pool in rng.sample(validators, 2):
                await driver.stake(contract, staker, pool, amount())
    for staker in stakers[:4]:
        for pool in rng.sample(names, 2):
            await driver.stake("native_v2", staker, pool, amount())
    token_ids = await driver.fresh_token_ids(5)
    for i, token_id in enumerate(token_ids):
        await driver.stake("erc721_v1", stakers[i % 3], validators[i % len(validators)], token_id)
    nft_ids = await driver.fresh_token_ids(5, start=token_ids[-1] + 1)
    if await driver._nft_owner(0) is None:
        nft_ids[-1] = 0  # NFT 0: its request can never be withdrawn
    for i, token_id in enumerate(nft_ids):
        await driver.stake("erc721_v2", stakers[i % 3], validators[(i + 1) % len(validators)], token_id)
    await driver.stake_via_batcher_v2(stakers[4], names[1:], [amount(), amount()])

    async def biggest_pools(contract: str, pools: Sequence[str]) -> list[tuple[str, int]]:
        """(pool, staked) pairs, largest first."""
        sizes = [(p, await driver.pool_size(contract, p)) for p in pools]
        return sorted(sizes, key=lambda item: -item[1])

    # Immediate unstakes on v1 (single and multiple), then v2 requests (single, and
    # multiple: per-pool + aggregate events); amounts stay within balance and pools.
    for contract, pools in (
        ("native_v1", validators),
        ("erc20_v1", validators),
        ("native_v2", names),
        ("erc20_v2", validators),
    ):
        (first, size1), (second, size2) = (await biggest_pools(contract, pools))[:2]
        part = min(await balance(contract, stakers[1]), size2) // 5
        await driver.unstake_multiple(contract, stakers[1], [first, second], [part, part // 2])
        part = min(await balance(contract, stakers[2]), size1 - part) // 3
        await driver.unstake(contract, stakers[2], first, part)

    # LST moves to a holder who never staked, who then unstakes it.
    for contract, pools in (("native_v1", validators), ("native_v2", names)):
        moved = await balance(contract, stakers[3]) * 2 // 5
        await driver.transfer_lst(contract, stakers[3], outsider, moved)
        biggest, size = (await biggest_pools(contract, pools))[0]
        await driver.unstake(contract, outsider, biggest, min(moved, size))
    await driver.transfer_lst("erc721_v1", stakers[0], outsider, token_ids[0])
    await driver.unstake("erc721_v1", outsider, validators[0], token_ids[0])
    await driver.transfer_lst("erc20_v2", stakers[0], stakers[3], await balance("erc20_v2", stakers[0]) // 3)
    # ERC-721 v2: an LST moved to the outsider, who requests the NFT back; the stakers request theirs.
    await driver.transfer_lst("erc721_v2", stakers[0], outsider, nft_ids[0])
    await driver.unstake("erc721_v2", outsider, validators[1], nft_ids[0])
    await driver.unstake("erc721_v2", stakers[1], validators[2], nft_ids[1])
    await driver.unstake("erc721_v2", stakers[1], validators[(4 + 1) % 3], nft_ids[4])  # NFT 0 when free

    # Three days later: withdrawals, then life goes on.
    await driver.advance_time(LOCK_SECONDS + 60)
    for contract, holder in (
        ("native_v2", stakers[1]),
        ("native_v2", stakers[2]),
        ("native_v2", outsider),
        ("erc20_v2", stakers[1]),
        ("erc20_v2", stakers[2]),
        ("erc721_v2", outsider),
        ("erc721_v2", stakers[1]),  # returns nft_ids[1]; a request for NFT 0 stays
    ):
        await driver.withdraw(contract, holder)
    await driver.stake("native_v2", stakers[0], names[0], amount())
    await driver.stake("native_v1", outsider, validators[2], amount())
    await driver.unstake("erc721_v1", stakers[1], validators[1], token_ids[1])
    # Requests that have not matured yet: pending at the end.
    await driver.unstake("native_v2", stakers[0], names[0], amount() // 10)
    await driver.unstake("erc20_v2", stakers[3], (await biggest_pools("erc20_v2", validators))[0][0],
                         await balance("erc20_v2", stakers[3]) // 4)  # fmt: skip
    await driver.unstake("erc721_v2", stakers[2], validators[(2 + 1) % 3], nft_ids[2])
    return driver.tx_count - start

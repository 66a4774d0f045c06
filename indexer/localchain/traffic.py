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
    "erc721": "Erc721Staking",
    "token": "TestToken",
    "nft": "TestNft",
    "batcher": "StakeBatcher",
}
STAKING = ("native_v1", "native_v2", "erc20_v1", "erc20_v2", "erc721")
V2 = ("native_v2", "erc20_v2")


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
            await self.send(nft.functions.mint(self.w3.to_checksum_address(staker), amount), staker)
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
        if contract == "erc721":
            raise ValueError("Erc721Staking has no unstakeMultiple")
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
        if contract == "erc721":
            call = staking.functions.transferFrom(self.w3.to_checksum_address(sender), to, amount)
        else:
            call = staking.functions.transfer(to, amount)
        return await self.send(call, sender)

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
        nft = self._contracts["nft"]
        found: list[int] = []
        token_id = start
        while len(found) < n:
            try:
                await nft.functions.ownerOf(token_id).call()
            except ContractLogicError:
                found.append(token_id)
            token_id += 1
        return found


async def realistic_mix(driver: Driver, seed: int = 7) -> int:
    """Plausible traffic over all five contracts (stakes, unstakes, LST transfers, withdrawals); returns txs sent.

    Needs 19+ accounts: 1-5 stake, 6 only receives LST, 16-18 are the address pools.
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
        await driver.stake("erc721", stakers[i % 3], validators[i % len(validators)], token_id)
    await driver.stake_via_batcher_v2(stakers[4], names[1:], [amount(), amount()])

    async def biggest_pools(contract: str, pools: Sequence[str]) -> list[tuple[str, int]]:
        """(pool, staked) pairs, largest first."""
        staking = driver.contract(contract)
        sizes = [(p, int(await staking.functions.stakingPools(p).call())) for p in pools]
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
    await driver.transfer_lst("erc721", stakers[0], outsider, token_ids[0])
    await driver.unstake("erc721", outsider, validators[0], token_ids[0])
    await driver.transfer_lst("erc20_v2", stakers[0], stakers[3], await balance("erc20_v2", stakers[0]) // 3)

    # Three days later: withdrawals, then life goes on.
    await driver.advance_time(LOCK_SECONDS + 60)
    for contract, holder in (
        ("native_v2", stakers[1]),
        ("native_v2", stakers[2]),
        ("native_v2", outsider),
        ("erc20_v2", stakers[1]),
        ("erc20_v2", stakers[2]),
    ):
        await driver.withdraw(contract, holder)
    await driver.stake("native_v2", stakers[0], names[0], amount())
    await driver.stake("native_v1", outsider, validators[2], amount())
    await driver.unstake("erc721", stakers[1], validators[1], token_ids[1])
    return driver.tx_count - start

"""Deploy the project's contracts to a local chain in a fixed order (so fresh-anvil addresses never change)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from web3 import AsyncWeb3

from indexer.localchain import artifacts


@dataclass(frozen=True)
class Deployment:
    """Lower-case 0x addresses of one deployment."""

    native_v1: str
    native_v2: str
    erc20_v1: str
    erc20_v2: str
    erc721_v1: str
    token: str
    nft: str
    batcher: str
    erc721_v2: str

    def contracts(self) -> list[dict[str, Any]]:
        """The six staking contracts as chains.yaml `contracts` entries."""
        return [
            _entry("klyeth_v1", "native", 1, self.native_v1, "ETH", 18),
            _entry("klyeth", "native", 2, self.native_v2, "ETH", 18),
            _entry("klytoken_v1", "erc20", 1, self.erc20_v1, "TKN", 18),
            _entry("klytoken", "erc20", 2, self.erc20_v2, "TKN", 18),
            _entry("klynft", "erc721", 1, self.erc721_v1, "NFT", 0),
            _entry("klynft_v2", "erc721", 2, self.erc721_v2, "NFT", 0),
        ]

    def as_dict(self) -> dict[str, str]:
        """Field name -> address."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _entry(name: str, kind: str, version: int, address: str, asset: str, decimals: int) -> dict[str, Any]:
    """One chains.yaml contract entry."""
    return {
        "name": name,
        "kind": kind,
        "version": version,
        "address": address,
        "asset": asset,
        "decimals": decimals,
        "weight": 1,
    }


async def _deploy(w3: AsyncWeb3, deployer: str, name: str, *args: Any) -> str:
    """Deploy one artifact from `deployer`; return its lower-case address."""
    factory = w3.eth.contract(abi=artifacts.abi(name), bytecode=artifacts.bytecode(name))
    tx_hash = await factory.constructor(*args).transact({"from": deployer})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise RuntimeError(f"deploying {name} failed: {receipt}")
    return str(receipt["contractAddress"]).lower()


async def deploy_all(w3: AsyncWeb3, deployer: str | None = None) -> Deployment:
    """Deploy every contract from `deployer` (default accounts[0]) in a fixed order."""
    if deployer is None:
        deployer = (await w3.eth.accounts)[0]
    sender = w3.to_checksum_address(deployer)
    token = await _deploy(w3, sender, "TestToken")
    nft = await _deploy(w3, sender, "TestNft")
    native_v1 = await _deploy(w3, sender, "NativeStakingV1", "Klyntar Staked ETH v1", "klyETH1")
    native_v2 = await _deploy(w3, sender, "NativeStakingV2", "Klyntar Staked ETH", "klyETH")
    erc20_v1 = await _deploy(
        w3, sender, "Erc20StakingV1", "Klyntar Staked TKN v1", "klyTKN1", w3.to_checksum_address(token)
    )
    erc20_v2 = await _deploy(
        w3, sender, "Erc20StakingV2", "Klyntar Staked TKN", "klyTKN", w3.to_checksum_address(token)
    )
    erc721_v1 = await _deploy(
        w3, sender, "Erc721StakingV1", "Klyntar Staked NFT v1", "klyNFT1", w3.to_checksum_address(nft)
    )
    batcher = await _deploy(w3, sender, "StakeBatcher")
    # Deployed last, so the addresses of the others stay those of earlier releases.
    erc721_v2 = await _deploy(
        w3, sender, "Erc721StakingV2", "Klyntar Staked NFT", "klyNFT", w3.to_checksum_address(nft)
    )
    return Deployment(
        native_v1=native_v1,
        native_v2=native_v2,
        erc20_v1=erc20_v1,
        erc20_v2=erc20_v2,
        erc721_v1=erc721_v1,
        token=token,
        nft=nft,
        batcher=batcher,
        erc721_v2=erc721_v2,
    )

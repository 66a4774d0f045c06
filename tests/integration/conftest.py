"""One anvil per test session with the contracts deployed; each test starts from the deployed state."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from web3 import AsyncHTTPProvider, AsyncWeb3

from indexer.localchain import Anvil, Deployment, Driver, deploy_all
from indexer.localchain.anvil import free_port


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
async def deployment(anvil: Anvil) -> AsyncIterator[Deployment]:
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    deployed = await deploy_all(w3)
    await w3.provider.disconnect()
    yield deployed


@pytest.fixture
async def driver(anvil: Anvil, deployment: Deployment) -> AsyncIterator[Driver]:
    """A Driver on the session anvil; the chain is reverted to the deployed state afterwards."""
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url))
    drv = await Driver.create(w3, deployment)
    snapshot = await drv.rpc("evm_snapshot", [])
    yield drv
    assert await drv.rpc("evm_revert", [snapshot]) is True
    await w3.provider.disconnect()


def chain_config(
    deployment: Deployment, rpc: list[str], *, name: str = "local", start_block: int = 0, **overrides: Any
) -> dict[str, Any]:
    """A chains.yaml `chains` entry for the deployed contracts."""
    contracts = [c | {"start_block": start_block} for c in deployment.contracts()]
    return {
        "name": name,
        "kind": "evm",
        "chain_id": 31337,
        "rpc": rpc,
        "confirmations": 0,
        "poll_interval_seconds": 0.2,
        "contracts": contracts,
    } | overrides


def write_config(path: Path, dsn: str, chains: list[dict[str, Any]], **top: Any) -> Path:
    """Write a chains.yaml for the CLI under test."""
    document = {
        "database": {"dsn": dsn},
        "http": {"listen": f"127.0.0.1:{free_port()}"},  # every `indexer run` under test serves on its own port
        "validators": [{"id": "validator-one", "commission_bps": 1000}],
        "chains": chains,
    } | top
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


INDEXER = [sys.executable, "-m", "indexer"]


async def until(predicate, timeout: float = 20.0, step: float = 0.02) -> None:
    """Wait until the async `predicate` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached in time")


async def indexed_to_head(db, driver, chain: str = "local") -> bool:
    """Whether `chain`'s cursor is at the node's latest block (number and hash)."""
    head = await driver.w3.eth.get_block("latest")
    row = await db.fetchrow("SELECT block_number, block_hash FROM chain_cursors WHERE chain = $1", chain)
    return row is not None and (row["block_number"], row["block_hash"]) == (head["number"], head["hash"].to_0x_hex())

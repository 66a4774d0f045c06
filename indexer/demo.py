"""`indexer demo`: a local anvil with the project's contracts, realistic staking traffic, indexed and summarised.

What it reads back comes from `indexer.store.summary` and `indexer.store.health`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from decimal import Decimal
from urllib.parse import urlsplit

from web3 import AsyncHTTPProvider, AsyncWeb3

from indexer.errors import ConfigError, IndexerError
from indexer.localchain import Anvil, Driver, deploy_all, realistic_mix
from indexer.service import index_chains, open_database
from indexer.store import health, summary
from indexer.store.cursors import forget_chain
from indexer.verify import verify

DEMO_CHAIN_ID = 31337


def _port_if_free(url: str) -> int | None:
    """The port of a local URL when nothing listens there yet."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        return None
    with socket.socket() as probe:
        return None if probe.connect_ex(("127.0.0.1", parts.port)) == 0 else parts.port


async def run_demo(config, *, seed: int = 7) -> int:
    """Run the demo against the config's chain with chain_id 31337; returns the exit code."""
    chain = next((c for c in config.chains if c.kind == "evm" and c.chain_id == DEMO_CHAIN_ID), None)
    if chain is None:
        raise ConfigError(f"the demo needs an `evm` chain with chain_id {DEMO_CHAIN_ID} in the config")
    with Anvil(port=_port_if_free(chain.rpc[0])) as node:
        print(f"demo: anvil at {node.url}")
        w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
        try:
            deployment = await deploy_all(w3)
            _check_addresses(chain, deployment.contracts())
            driver = await Driver.create(w3, deployment)
            sent = await realistic_mix(driver, seed)
            await driver.mine(chain.confirmations)
            print(f"demo: deployed 5 staking contracts and sent {sent} transactions")
        finally:
            await w3.provider.disconnect()
        local = chain.model_copy(update={"rpc": (node.url,)})
        demo_config = config.model_copy(update={"chains": (local,)})
        async with open_database(config) as pool:
            await forget_chain(pool, chain.name)  # the demo chain is new at every run: drop an earlier demo's
            started = time.perf_counter()
            await index_chains(demo_config, pool, asyncio.Event(), once=True)
            elapsed = time.perf_counter() - started
            await _print_summary(pool, chain, demo_config, elapsed)
    return 0


def _check_addresses(chain, deployed: list[dict]) -> None:
    configured = {(c.kind, c.version): c.address for c in chain.contracts}
    wrong = [
        f"{d['name']} ({d['kind']} v{d['version']}) is at {d['address']}, the config says "
        f"{configured.get((d['kind'], d['version']), 'nothing')}"
        for d in deployed
        if configured.get((d["kind"], d["version"])) != d["address"]
    ]
    if wrong:
        raise IndexerError(f"chain {chain.name}: the demo deployment does not match the config: " + "; ".join(wrong))


async def _print_summary(pool, chain, demo_config, elapsed: float) -> None:
    names = {c.address: c for c in chain.contracts}
    counts = await summary.event_counts(pool, chain.name)
    total = sum(n for _, _, n in counts)
    status = (await health.chain_status(pool, chain.name))[0]
    print(f"\nindexed {total} events up to block {status['indexed_block']} in {elapsed:.2f} s")
    print(f"\n{'contract':<14}{'event':<18}{'count':>7}")
    for contract, event_type, n in sorted(counts, key=lambda c: (names[c[0]].name, c[1])):
        print(f"{names[contract].name:<14}{event_type:<18}{n:>7}")
    points = await summary.validator_points(pool)
    print(f"\n{'validator':<44}{'staked':>28}{'points':>14}")
    for r in points:
        amount = Decimal(r["amount"]).scaleb(-r["decimals"]).normalize()
        print(f"{r['validator']:<44}{amount:>24,f} {r['asset']:<3}{r['points']:>14,.2f}")
    mismatches, readings = await verify(demo_config, pool)
    print(
        f"\nverify against the chain: {readings} readings (stakingPools, getStakedTokens, ownerOf, balanceOf, "
        f"totalSupply, withdrawalRequests), {len(mismatches)} mismatches"
    )
    print("\nin Postgres: table `events`; views v_indexer_status, v_validator_points, v_staker_positions, ...")

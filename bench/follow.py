"""Following the head: confirmation latency, reorg repair time, RPC requests per poll, on a real anvil.

Run by hand: `.venv/bin/python bench/follow.py`. Prints
  1. the time from a block becoming confirmed on the node (its `confirmations`-th successor
     mined) to the indexer counting it confirmed with its events stored, median and p90
     over many samples, against the target `poll_interval + 0.5 s`;
  2. the time from a new block to its (pending) events being in Postgres;
  3. the time to detect and repair a depth-10 reorg and index the new branch (no poll wait);
  4. HTTP requests and JSON-RPC calls per idle poll and per poll with one new block.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

from web3 import AsyncHTTPProvider, AsyncWeb3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backfill import CountingRpc, chain_document, fresh_database  # noqa: E402
from indexer.chains.evm import EvmSource  # noqa: E402
from indexer.config import parse_config  # noqa: E402
from indexer.localchain import Anvil, Driver, deploy_all  # noqa: E402
from indexer.logs import configure_logging  # noqa: E402
from indexer.store.database import apply_schema, create_pool  # noqa: E402
from indexer.watcher import Watcher  # noqa: E402

POOL = "0x" + "a1" * 20


async def wait_for(predicate, timeout: float = 30.0, step: float = 0.005) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if await predicate():
            return time.perf_counter() - started
        await asyncio.sleep(step)
    raise TimeoutError("condition not reached")


async def main(args) -> None:
    configure_logging("warning")
    with Anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
        deployment = await deploy_all(w3)
        driver = await Driver.create(w3, deployment)
        dsn = await fresh_database(args.server)
        pool = await create_pool(dsn)
        await apply_schema(pool)
        document = chain_document(deployment, node.url, "follow") | {
            "confirmations": args.confirmations,
            "poll_interval_seconds": args.poll_interval,
        }
        chain = parse_config({"chains": [document]}).chains[0]
        rpc = CountingRpc(chain.name, chain.rpc)
        watcher = Watcher(EvmSource(chain, rpc), chain, pool)
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop, once=False))
        rng = random.Random(7)

        confirmed_latency, stored_latency = [], []
        for i in range(args.samples):
            await asyncio.sleep(rng.uniform(0, args.poll_interval))  # any phase of the poll cycle
            receipt = await driver.stake("native_v1", driver.accounts[1 + i % 5], POOL, 10**18)
            block, tx = receipt["blockNumber"], receipt["transactionHash"].to_0x_hex()
            stored_latency.append(
                await wait_for(lambda tx=tx: pool.fetchval("SELECT count(*) = 2 FROM events WHERE tx_hash = $1", tx))
            )
            await asyncio.sleep(rng.uniform(0, args.poll_interval))
            await driver.mine(args.confirmations)  # the block is confirmed on the node now
            confirmed_latency.append(
                await wait_for(
                    lambda block=block: pool.fetchval(
                        "SELECT confirmed_block >= $1 FROM chain_cursors WHERE chain = 'follow'", block
                    )
                )
            )

        def summary(values: list[float]) -> str:
            values = sorted(values)
            return f"median {statistics.median(values):.3f} s, p90 {values[int(0.9 * (len(values) - 1))]:.3f} s"

        print(f"poll interval {args.poll_interval} s, confirmations {args.confirmations}, {args.samples} samples")
        print(
            f"confirmed on the node -> confirmed in Postgres: {summary(confirmed_latency)} "
            f"(target: median < {args.poll_interval + 0.5:.1f} s)"
        )
        print(f"mined -> events stored (pending):           {summary(stored_latency)}")

        head = await w3.eth.block_number
        await wait_for(lambda: pool.fetchval("SELECT block_number = $1 FROM chain_cursors", head))
        rpc.calls.clear()
        rpc.http_requests = 0
        await asyncio.sleep(args.poll_interval * 5.5)
        idle_polls = 5
        print(
            f"idle polls: {rpc.http_requests / idle_polls:.1f} HTTP requests, "
            f"{sum(rpc.calls.values()) / idle_polls:.1f} JSON-RPC calls per poll ({dict(rpc.calls)})"
        )
        rpc.calls.clear()
        rpc.http_requests = 0
        await driver.stake("native_v1", driver.accounts[1], POOL, 10**18)
        await asyncio.sleep(args.poll_interval * 1.5)
        print(
            f"a poll that finds one new block: {rpc.http_requests} HTTP requests ({dict(rpc.calls)}, "
            "incl. one idle poll)"
        )

        stop.set()
        await task
        for _ in range(10):
            await driver.stake("native_v1", driver.accounts[2], POOL, 10**18)
        await watcher.catch_up(asyncio.Event(), follow_head=True)
        timings = []
        for _ in range(args.reorgs):
            await driver.rpc("anvil_reorg", [10, []])
            started = time.perf_counter()
            await watcher.catch_up(asyncio.Event(), follow_head=True)
            timings.append(time.perf_counter() - started)
            head = await w3.eth.get_block("latest")
            row = await pool.fetchrow("SELECT block_number, block_hash FROM chain_cursors WHERE chain = 'follow'")
            assert (row["block_number"], row["block_hash"]) == (head["number"], head["hash"].to_0x_hex())
            for _ in range(10):
                await driver.stake("native_v1", driver.accounts[2], POOL, 10**18)
            await watcher.catch_up(asyncio.Event(), follow_head=True)
        depths = [r["depth"] for r in await pool.fetch("SELECT depth FROM reorgs")]
        print(
            f"depth-10 reorg detected, rewound and re-indexed: {summary(timings)} over {len(timings)} reorgs "
            f"(depths seen {sorted(set(depths))}; target < 1 s)"
        )
        await rpc.close()
        await pool.close()
        await w3.provider.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--reorgs", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--confirmations", type=int, default=2)
    parser.add_argument(
        "--server", default=os.environ.get("INDEXER_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    asyncio.run(main(parser.parse_args()))

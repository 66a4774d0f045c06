"""Backfill benchmark: the indexer's pipeline against a naive baseline, on a real local anvil.

Run by hand: `make bench` (or `.venv/bin/python bench/backfill.py --events 100000`).
Prints events/s and blocks/s for
  1. the indexer (adaptive eth_getLogs + byte-slice decoding + COPY, cursor per batch),
  2. the same with the node's `blockTimestamp` stripped, so block headers are fetched in batches,
  3. a naive baseline: web3 contract-event `get_logs` over fixed 1,000-block ranges, one INSERT
     and commit per event,
the ratio between them, the peak RSS of a separate `indexer run --once` process, and the number
of eth_getLogs calls for 100,000 blocks with sparse events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg
import yaml
from web3 import AsyncHTTPProvider, AsyncWeb3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.chains.evm import EvmSource  # noqa: E402
from indexer.chains.rpc import RpcClient  # noqa: E402
from indexer.config import parse_config  # noqa: E402
from indexer.localchain import Anvil, Driver, deploy_all  # noqa: E402
from indexer.localchain.artifacts import abi  # noqa: E402
from indexer.runtime import tune_gc  # noqa: E402
from indexer.store.database import apply_schema, create_pool  # noqa: E402
from indexer.watcher import Watcher  # noqa: E402

STAKES_PER_TX = 1_000  # each stake logs a Transfer (mint) and a StakeOccured: 2,000 logs per block
POOLS = ["0x" + f"{i:02x}" * 20 for i in range(1, 11)]


class CountingRpc(RpcClient):
    """An RpcClient that counts calls by method and can hide the node's `blockTimestamp`."""

    def __init__(self, *args, strip_timestamps: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.http_requests = 0
        self.strip_timestamps = strip_timestamps

    async def batch(self, calls):
        self.http_requests += 1
        self.calls.update(method for method, _ in calls)
        answers = await super().batch(calls)
        if self.strip_timestamps:
            for (method, _), answer in zip(calls, answers, strict=True):
                if method == "eth_getLogs" and isinstance(answer, list):
                    for entry in answer:
                        entry.pop("blockTimestamp", None)
        return answers


def chain_document(deployment, url: str, name: str) -> dict:
    contracts = [c | {"start_block": 0} for c in deployment.contracts()]
    return {
        "name": name,
        "kind": "evm",
        "chain_id": 31337,
        "rpc": [url],
        "confirmations": 0,
        "max_block_range": 10_000,
        "contracts": contracts,
    }


async def fresh_database(server: str) -> str:
    """A new empty database for this run; earlier runs' databases that nobody uses any more are dropped."""
    name = f"indexer_bench_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    admin = await asyncpg.connect(server)
    try:
        for old in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'indexer\\_bench\\_%'"):
            with contextlib.suppress(asyncpg.ObjectInUseError):  # another benchmark's, still running
                await admin.execute(f'DROP DATABASE "{old["datname"]}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.rsplit("/", 1)[0] + "/" + name


async def indexer_pass(
    dsn: str, deployment, url: str, name: str, *, strip: bool, **chain: int
) -> tuple[float, int, Counter]:
    document = chain_document(deployment, url, name) | chain
    config = parse_config({"database": {"dsn": dsn}, "chains": [document]})
    chain = config.chains[0]
    pool = await create_pool(dsn)
    await apply_schema(pool)
    rpc = CountingRpc(chain.name, chain.rpc, strip_timestamps=strip)
    watcher = Watcher(EvmSource(chain, rpc), chain, pool)
    started, cpu = time.perf_counter(), time.process_time()
    await watcher.catch_up(asyncio.Event())
    elapsed = time.perf_counter() - started
    if os.environ.get("BENCH_CPU"):
        print(f"  [{name}] wall {elapsed:.2f} s, this process's CPU {time.process_time() - cpu:.2f} s")
    count = await pool.fetchval("SELECT count(*) FROM events WHERE chain = $1", name)
    await rpc.close()
    await pool.close()
    return elapsed, count, rpc.calls


async def naive_pass(dsn: str, deployment, url: str, head: int) -> tuple[float, int]:
    """web3 contract events over fixed 1,000-block ranges; one INSERT + commit per event."""
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    contract = w3.eth.contract(address=w3.to_checksum_address(deployment.native_v1), abi=abi("NativeStakingV1"))
    conn = await asyncpg.connect(dsn)
    times: dict[int, int] = {}
    started = time.perf_counter()
    count = 0
    for start in range(0, head + 1, 1000):
        end = min(start + 999, head)
        for event in (contract.events.Transfer, contract.events.StakeOccured):
            for entry in await event.get_logs(from_block=start, to_block=end):
                number = entry["blockNumber"]
                if number not in times:
                    times[number] = (await w3.eth.get_block(number))["timestamp"]
                args = entry["args"]
                async with conn.transaction():
                    await conn.execute(
                        """INSERT INTO events (chain, chain_id, contract, contract_kind, contract_version, block_number,
                               block_hash, block_time, tx_hash, log_index, event_type, staker, counterparty, pool,
                               amount, asset)
                           VALUES ('naive', 31337, $1, 'native', 1, $2, $3, to_timestamp($4), $5, $6, $7, $8, $9,
                                   $10, $11, 'ETH') ON CONFLICT DO NOTHING""",
                        deployment.native_v1,
                        number,
                        entry["blockHash"].to_0x_hex(),
                        times[number],
                        entry["transactionHash"].to_0x_hex(),
                        entry["logIndex"],
                        "transfer" if entry["event"] == "Transfer" else "stake",
                        (args.get("from") or args.get("staker")).lower(),
                        (args.get("to") or "").lower() or None,
                        (args.get("toPool") or "").lower() or None,
                        args.get("value", args.get("amount")),
                    )
                count += 1
    elapsed = time.perf_counter() - started
    await conn.close()
    await w3.provider.disconnect()
    return elapsed, count


def process_rss(dsn: str, deployment, url: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a real `indexer run --once` process."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "chains.yaml"
        document = {"database": {"dsn": dsn}, "chains": [chain_document(deployment, url, "process")]}
        config.write_text(yaml.safe_dump(document))
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "indexer", "--config", str(config), "--log-level", "warning", "run", "--once"]
        )
        _, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            raise SystemExit(f"indexer run --once failed with status {status}")
        return time.perf_counter() - started, usage.ru_maxrss / 1024


async def dense(args) -> None:
    with Anvil(extra_args=["--gas-limit", "200000000"]) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
        deployment = await deploy_all(w3)
        driver = await Driver.create(w3, deployment)
        started = time.perf_counter()
        stakes_left = args.events // 2
        while stakes_left > 0:
            rounds = max(1, min(STAKES_PER_TX, stakes_left) // len(POOLS))
            await driver.stake_many_native_v1(driver.accounts[1], POOLS, 10**12, rounds)
            stakes_left -= rounds * len(POOLS)
        await driver.mine(args.spread_blocks)  # a realistic span of blocks to walk through
        head = await w3.eth.block_number
        await w3.provider.disconnect()
        print(f"set-up: {args.events:,} events in {head:,} blocks on anvil in {time.perf_counter() - started:.1f} s")

        dsn = await fresh_database(args.server)
        fast, events, calls = await indexer_pass(dsn, deployment, node.url, "fast", strip=False)
        headers, _, header_calls = await indexer_pass(dsn, deployment, node.url, "headers", strip=True)
        wall, rss = process_rss(dsn, deployment, node.url)
        if args.skip_baseline:
            naive, naive_events = float("nan"), 0
        else:
            naive, naive_events = await naive_pass(dsn, deployment, node.url, head)

        def line(label: str, seconds: float, n: int) -> str:
            return f"{label:<44}{n / seconds:>12,.0f} events/s {head / seconds:>12,.0f} blocks/s {seconds:>8.2f} s"

        print(f"\nbackfill of {events:,} events over {head:,} blocks")
        print(line("indexer (defaults: blockTimestamp + hashes checked)", fast, events))
        print(line("indexer (node without blockTimestamp)", headers, events))
        if naive_events:
            print(line("naive (web3 get_logs, INSERT+commit each)", naive, naive_events))
        if naive_events:
            print(
                f"speed-up: {(events / fast) / (naive_events / naive):.1f}x  "
                f"(headers path {(events / headers) / (naive_events / naive):.1f}x)"
            )
        print(f"RPC calls: {dict(calls)}; headers path: {dict(header_calls)}")
        print(f"indexer run --once process: {wall:.2f} s wall (incl. start-up), peak RSS {rss:.0f} MB")


async def sparse(args) -> None:
    """RPC calls for a long chain with few events.

    anvil's `anvil_mine` slows down superlinearly with chain length (10 x 1,000 blocks take
    about a minute here), so 100,000 real blocks are out of reach: this mines `--sparse-blocks`
    real blocks and caps the range at a proportional ceiling, so the call count per range
    ceiling is measured directly and scales linearly to 100,000 blocks at a 10,000-block ceiling.
    """
    blocks, ceiling = args.sparse_blocks, args.sparse_blocks // 10
    with Anvil() as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
        deployment = await deploy_all(w3)
        driver = await Driver.create(w3, deployment)
        for _ in range(10):  # ten stakes scattered over the chain
            await driver.mine(blocks // 10)
            await driver.stake("native_v1", driver.accounts[1], POOLS[0], 10**18)
        head = await w3.eth.block_number
        await w3.provider.disconnect()
        dsn = await fresh_database(args.server)
        seconds, events, calls = await indexer_pass(
            dsn, deployment, node.url, "sparse", strip=False, max_block_range=ceiling
        )
        print(
            f"\nsparse: {events} events over {head:,} blocks in {seconds:.2f} s, range ceiling {ceiling:,} blocks: "
            f"{calls['eth_getLogs']} eth_getLogs calls ({head / ceiling:.1f} ceilings); all calls: {dict(calls)}"
        )
        print(
            f"  scaled: 100,000 blocks at the default 10,000-block ceiling -> "
            f"{calls['eth_getLogs'] * (100_000 / 10_000) / (head / ceiling):.0f} eth_getLogs calls"
        )


def main() -> None:
    if "--default-gc" not in sys.argv:
        tune_gc()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sparse-blocks", type=int, default=3_000, help="chain length of the sparse run")
    parser.add_argument("--spread-blocks", type=int, default=2_000, help="empty blocks mined after the stakes")
    parser.add_argument(
        "--server", default=os.environ.get("INDEXER_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--default-gc", action="store_true", help="keep Python's default GC thresholds")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the slow naive baseline")
    parser.add_argument("--skip-sparse", action="store_true", help="skip the sparse-chain call count")
    args = parser.parse_args()
    asyncio.run(dense(args))
    if not args.skip_sparse:
        asyncio.run(sparse(args))


if __name__ == "__main__":
    main()

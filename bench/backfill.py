"""Backfill benchmark: the indexer's pipeline against a naive baseline, on a real local anvil.

Run by hand: `make bench` (or `.venv/bin/python bench/backfill.py --events 100000`).
Prints events/s and blocks/s for
  1. a real `indexer run --once` process on a fresh database, from its start to its exit with the
     projections committed (wall, peak RSS), against
  2. the bare Python pipe in the same run: eth_getLogs over the same 10,000-block ranges, msgspec,
     byte-slice decoding, COPY into an unindexed table (the floor any Python indexer pays),
  3. where the process's time goes: its start-up (interpreter and imports, the schema check) and,
     from the same `index_chains` run in this process, each stage's busy seconds (fetch, block
     headers and hash checks, decode, COPY and insert, projection; stages overlap),
  4. the ingest alone (the watcher, no projection), and with the node's `blockTimestamp` stripped
     (block headers fetched in batches),
  5. a naive baseline: web3 contract-event `get_logs` over fixed 1,000-block ranges, one INSERT
     and commit per event,
and the number of eth_getLogs calls for 100,000 blocks with sparse events.
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
from indexer.logs import configure_logging  # noqa: E402
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


BARE_TABLE = """CREATE TABLE bare_events (block_number bigint, block_hash text, block_time bigint, tx_hash text,
    log_index integer, topic text, staker text, counterparty text, amount numeric(78, 0))"""


async def bare_pipe(dsn: str, url: str, address: str, head: int, ceiling: int) -> tuple[float, int]:
    """The floor of a Python backfill: eth_getLogs over `ceiling`-block ranges, msgspec, byte-slice decoding
    of the indexed topics, COPY into an unindexed table, one commit; (seconds, logs)."""
    import aiohttp
    import msgspec

    conn = await asyncpg.connect(dsn)
    await conn.execute(BARE_TABLE)
    started, count = time.perf_counter(), 0
    async with aiohttp.ClientSession() as http, conn.transaction():
        for start in range(0, head + 1, ceiling):
            query = {"fromBlock": hex(start), "toBlock": hex(min(start + ceiling - 1, head)), "address": [address]}
            body = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [query]})
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                logs = msgspec.json.decode(await answer.read())["result"]
            lines = []
            for item in logs:
                topics = item["topics"]
                amount = int(topics[3], 16) if len(topics) > 3 else int(item["data"], 16)
                lines.append(
                    f"{int(item['blockNumber'], 16)}\t{item['blockHash']}\t{int(item['blockTimestamp'], 16)}\t"
                    f"{item['transactionHash']}\t{int(item['logIndex'], 16)}\t{topics[0][:10]}\t"
                    f"0x{topics[1][26:]}\t0x{topics[2][26:]}\t{amount}\n"
                )
            if lines:
                await conn.copy_to_table("bare_events", source=memoryview("".join(lines).encode()), format="text")
            count += len(logs)
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed, count


def process_run(dsn: str, deployment, url: str) -> tuple[float, float, float]:
    """Wall seconds (start to exit, projections committed), CPU seconds and peak RSS (MB) of a real
    `indexer run --once`."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "chains.yaml"
        document = {"database": {"dsn": dsn}, "chains": [chain_document(deployment, url, "process")]}
        config.write_text(yaml.safe_dump(document))
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "indexer", "--config", str(config), "--log-level", "warning", "run", "--once"]
        )
        peak = 0  # the child's own high-water mark: its ru_maxrss would count this process's pages from the fork
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(OSError):
                status_lines = Path(f"/proc/{child.pid}/status").read_text().splitlines()
                peak = max([peak, *(int(line.split()[1]) for line in status_lines if line.startswith("VmHWM:"))])
            time.sleep(0.01)
        if status != 0:
            raise SystemExit(f"indexer run --once failed with status {status}")
        return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, peak / 1024


def import_seconds() -> float:
    """Wall seconds of a fresh interpreter importing what `indexer run` imports (the process's start-up)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import indexer.cli, indexer.config, indexer.service"], check=True, cwd=ROOT)
    return time.perf_counter() - started


class Stages:
    """Busy seconds per stage of one `index_chains` run, by wrapping the functions each stage calls."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.undo: list = []

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)
        seconds = self.seconds

        if asyncio.iscoroutinefunction(original):

            async def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    seconds[stage] += time.perf_counter() - started
        else:

            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)
        self.undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self.undo):
            setattr(owner, name, original)


async def breakdown_pass(dsn: str, deployment, url: str) -> tuple[float, float, Counter[str]]:
    """The same `index_chains(once=True)` as `run --once`, in this process with its stages timed:
    (schema seconds on the fresh database, wall seconds of index_chains, busy seconds per stage)."""
    import indexer.chains.evm as evm
    import indexer.projector.runner as runner
    import indexer.watcher as watcher
    from indexer.decode.logs import LogDecoder
    from indexer.service import index_chains

    config = parse_config({"database": {"dsn": dsn}, "chains": [chain_document(deployment, url, "process")]})
    pool = await create_pool(dsn, max_size=6)
    started = time.perf_counter()
    await apply_schema(pool)
    schema = time.perf_counter() - started
    stages = Stages()
    stages.wrap(RpcClient, "batch", "fetch (RPC: eth_getLogs and range headers)")
    stages.wrap(evm.EvmSource, "_blocks_of", "block timestamps and hash checks")
    stages.wrap(LogDecoder, "decode", "decode")
    stages.wrap(watcher, "write_batch", "COPY and insert (event log, cursor)")
    stages.wrap(runner.Projector, "step", "projection (steps, incl. reads)")
    stages.wrap(watcher.Watcher, "run", "watchers (to their last batch committed)")
    steps = Counter()
    step = runner.Projector.step

    async def counted(self):
        steps["steps"] += 1
        steps["events"] += (folded := await step(self))
        return folded

    runner.Projector.step = counted
    try:
        started = time.perf_counter()
        await index_chains(config, pool, asyncio.Event(), once=True)
        wall = time.perf_counter() - started
    finally:
        runner.Projector.step = step
        stages.restore()
        await pool.close()
    stages.seconds[f"projection after the watchers ({steps['steps']} steps in all)"] = (
        wall - stages.seconds["watchers (to their last batch committed)"]
    )
    return schema, wall, stages.seconds


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

        for _ in range(args.lean):  # a long backfill, on one chain: the process against the bare pipe only
            bare, bare_events = await bare_pipe(
                await fresh_database(args.server), node.url, deployment.native_v1, head, 10_000
            )
            wall, cpu, rss = process_run(await fresh_database(args.server), deployment, node.url)
            rate = f"{bare_events / wall:,.0f} events/s, {bare / wall:.2f}x the bare pipe ({bare_events / bare:,.0f}/s)"
            print(f"indexer run --once: {bare_events:,} events in {wall:.1f} s = {rate}; peak RSS {rss:.0f} MB")
        if args.lean:
            return
        bare, bare_events = await bare_pipe(
            await fresh_database(args.server), node.url, deployment.native_v1, head, 10_000
        )
        wall, cpu, rss = process_run(await fresh_database(args.server), deployment, node.url)
        imports = import_seconds()
        schema, staged, stages = await breakdown_pass(await fresh_database(args.server), deployment, node.url)
        dsn = await fresh_database(args.server)
        fast, events, calls = await indexer_pass(dsn, deployment, node.url, "fast", strip=False)
        headers, _, header_calls = await indexer_pass(dsn, deployment, node.url, "headers", strip=True)
        if args.skip_baseline:
            naive, naive_events = float("nan"), 0
        else:
            naive, naive_events = await naive_pass(dsn, deployment, node.url, head)

        def line(label: str, seconds: float, n: int) -> str:
            return f"{label:<52}{n / seconds:>10,.0f} events/s {head / seconds:>9,.0f} blocks/s {seconds:>7.2f} s"

        print(f"\nbackfill of {events:,} events over {head:,} blocks")
        print(line("indexer run --once process (start to projections)", wall, events))
        print(line("bare pipe (getLogs + msgspec + slices + COPY)", bare, bare_events))
        print(f"  process / bare pipe: {bare / wall:.2f}x (target >= 0.5x; >= 40,000 events/s); peak RSS {rss:.0f} MB")
        print(f"  where the process's time goes ({wall:.2f} s wall, {cpu:.2f} s of its own CPU):")
        print(f"    start-up: interpreter and imports {imports:.2f} s, schema on a fresh database {schema:.2f} s")
        print(
            f"    index_chains(once=True) in this process: {staged:.2f} s wall; busy seconds per stage (overlapping):"
        )
        for stage, seconds in stages.items():
            print(f"      {stage:<46}{seconds:>6.2f} s")
        print(line("ingest alone (watcher, defaults)", fast, events))
        print(line("ingest alone, node without blockTimestamp", headers, events))
        if naive_events:
            print(line("naive (web3 get_logs, INSERT+commit each)", naive, naive_events))
            print(f"speed-up of the process over the naive baseline: {(events / wall) / (naive_events / naive):.1f}x")
        print(f"RPC calls: {dict(calls)}; headers path: {dict(header_calls)}")


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
    parser.add_argument(
        "--lean", type=int, default=0, metavar="N", help="only the process and the bare pipe, N times (long backfills)"
    )
    args = parser.parse_args()
    configure_logging("warning")
    asyncio.run(dense(args))
    if not args.skip_sparse:
        asyncio.run(sparse(args))


if __name__ == "__main__":
    main()

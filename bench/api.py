"""HTTP API benchmark: proofs of a 10,000-staker closed epoch served by a real `indexer run` that follows a chain.

Run by hand: `.venv/bin/python bench/api.py` (about a minute). It
  1. writes a closed epoch 0 straight into a fresh database: `--stakers` random stakers, one KLY leaf
     each and an ETH leaf for one in ten, the root computed by the project's leaf and tree functions;
  2. starts anvil with the contracts and a real `indexer run` process (http.listen on a free port)
     following it, while this process sends a stake every `--traffic-interval` seconds;
  3. measures the chain's lag without API load (`--baseline-seconds`): every 50 ms, the node's
     block number minus `v_indexer_status.indexed_block`, and per stake the seconds from its
     receipt to the indexer's cursor reaching its block;
  4. starts `--clients` concurrent keep-alive clients in a separate process, fetching random
     stakers' proofs for `--seconds` (after a short warm-up), and measures the same lag meanwhile:
     first paced at `--rate` proofs/s in all (latency counted from when each request was due), then
     as fast as they can (each client sends its next request when the last one is answered);
and prints proofs/s, p50/p90/p99 latency, the server's CPU per proof and the lags.
Target: >= 1,000 proofs/s with p99 < 50 ms, the lag unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import yaml
from web3 import AsyncHTTPProvider, AsyncWeb3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backfill import fresh_database  # noqa: E402
from indexer.epochs import merkle  # noqa: E402
from indexer.epochs.close import build_leaves  # noqa: E402
from indexer.localchain import Anvil, Driver, deploy_all  # noqa: E402
from indexer.localchain.anvil import free_port  # noqa: E402
from indexer.store.database import apply_schema, create_pool  # noqa: E402

VALIDATOR = "0x" + "a1" * 20
GENESIS = datetime(2025, 1, 1, tzinfo=UTC)
LENGTH = 86_400
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def closed_epoch(dsn: str, stakers: int, seed: int = 1) -> tuple[list[str], str, float]:
    """Write epoch 0, closed, with `stakers` stakers; (stakers, root, seconds to build)."""
    rng = random.Random(seed)
    started = time.perf_counter()
    addresses = sorted({"0x" + rng.randbytes(20).hex() for _ in range(stakers)})
    leaves = [(s, "KLY", rng.randint(1, 10**21)) for s in addresses]
    leaves += [(s, "ETH", rng.randint(1, 10**18)) for s in addresses[::10]]
    hashed = build_leaves(0, leaves)
    root = "0x" + merkle.root(merkle.build_tree(list(hashed))).hex()
    totals = {asset: sum(x for _, a, x in leaves if a == asset) for asset in ("KLY", "ETH")}
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO epochs (epoch, start_time, end_time) VALUES (0, $1, $2)",
                GENESIS,
                datetime.fromtimestamp(GENESIS.timestamp() + LENGTH, UTC),
            )
            await conn.executemany(
                "INSERT INTO epoch_rewards (epoch, validator, asset, amount) VALUES (0, $1, $2, $3::text::numeric)",
                [(VALIDATOR, asset, str(total)) for asset, total in totals.items()],
            )
            await conn.copy_records_to_table(
                "epoch_allocations",
                records=[(0, VALIDATOR, s, a, "stake", x) for s, a, x in leaves],
                columns=["epoch", "validator", "staker", "asset", "kind", "amount"],
            )
            await conn.execute(
                "UPDATE epochs SET root = $1, total = $2::text::numeric, closed_at = now() WHERE epoch = 0",
                root,
                str(sum(totals.values())),
            )
    finally:
        await conn.close()
    return addresses, root, time.perf_counter() - started


class Lag:
    """The chain's lag behind the node, sampled while stakes are sent."""

    def __init__(self, w3: AsyncWeb3, pool: asyncpg.Pool) -> None:
        self.w3, self.pool = w3, pool
        self.blocks: list[int] = []  # node head - indexed block, every 50 ms
        self.seconds: list[float] = []  # a stake's receipt -> the cursor at its block
        self.waiting: list[tuple[int, float]] = []

    def reset(self) -> None:
        self.blocks, self.seconds = [], []

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            head = await self.w3.eth.block_number
            indexed = await self.pool.fetchval("SELECT indexed_block FROM v_indexer_status WHERE chain = 'bench'")
            now = time.perf_counter()
            if indexed is not None:
                self.blocks.append(max(head - indexed, 0))
                done = [(b, t) for b, t in self.waiting if b <= indexed]
                self.seconds.extend(now - t for _, t in done)
                self.waiting = [(b, t) for b, t in self.waiting if b > indexed]
            await asyncio.sleep(0.05)

    async def traffic(self, driver: Driver, interval: float, stop: asyncio.Event) -> None:
        rng = random.Random(3)
        while not stop.is_set():
            receipt = await driver.stake("native_v1", driver.accounts[1 + rng.randrange(5)], VALIDATOR, 10**17)
            self.waiting.append((receipt["blockNumber"], time.perf_counter()))
            await asyncio.sleep(interval)

    def summary(self) -> str:
        blocks, seconds = self.blocks, self.seconds
        return (
            f"lag {statistics.mean(blocks):.2f} blocks mean, {max(blocks)} max ({len(blocks)} samples); "
            f"stake receipt -> indexed: median {statistics.median(seconds) * 1000:.0f} ms, "
            f"p90 {percentile(seconds, 0.9) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms ({len(seconds)} stakes)"
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


async def clients(args) -> None:
    """The load (a separate process): `--clients` keep-alive clients fetching random stakers' proofs."""
    stakers = json.loads(Path(args.stakers_file).read_text())
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=args.clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + args.warmup + args.seconds
        measure_from = time.perf_counter() + args.warmup

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            period = args.clients / args.rate if args.rate else 0.0  # paced: each client's share of the rate
            due = time.perf_counter() + rng.uniform(0, period)
            while (now := time.perf_counter()) < deadline:
                if period:
                    if due > now:
                        await asyncio.sleep(due - now)
                    now, due = due, due + period  # latency from when the request was due (no coordinated omission)
                async with session.get(f"{args.client}/v1/epochs/0/proofs/{rng.choice(stakers)}") as response:
                    await response.read()
                    ok = response.status == 200
                if now >= measure_from:
                    latencies.append(time.perf_counter() - now)
                    errors += not ok

        await asyncio.gather(*(worker(i) for i in range(args.clients)))
    print(json.dumps({"requests": len(latencies), "errors": errors, "seconds": args.seconds, "latencies": latencies}))


async def main(args) -> None:
    with Anvil() as node, tempfile.TemporaryDirectory() as tmp:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.url))
        deployment = await deploy_all(w3)
        driver = await Driver.create(w3, deployment)
        dsn = await fresh_database(args.server)
        pool = await create_pool(dsn)
        await apply_schema(pool)
        stakers, root, built = await closed_epoch(dsn, args.stakers)
        leaves = await pool.fetchval("SELECT count(*) FROM epoch_allocations")
        print(f"epoch 0: {len(stakers):,} stakers, {leaves:,} leaves, root {root[:18]}..., written in {built:.1f} s")

        port = free_port()
        config = Path(tmp) / "chains.yaml"
        contracts = [c | {"start_block": 0} for c in deployment.contracts()]
        document = {
            "database": {"dsn": dsn},
            "http": {"listen": f"127.0.0.1:{port}"},
            "epochs": {"genesis": GENESIS.isoformat(), "length_seconds": LENGTH},
            "validators": [{"id": VALIDATOR, "commission_bps": 1000}],
            "chains": [
                {
                    "name": "bench",
                    "kind": "evm",
                    "chain_id": 31337,
                    "rpc": [node.url],
                    "confirmations": args.confirmations,
                    "poll_interval_seconds": args.poll_interval,
                    "contracts": contracts,
                }
            ],
        }
        config.write_text(yaml.safe_dump(document))
        log = open(Path(tmp) / "indexer.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [sys.executable, "-m", "indexer", "--config", str(config), "--log-level", "warning", "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        stop = asyncio.Event()
        lag = Lag(w3, pool)
        tasks: list[asyncio.Task] = []
        results: list[tuple[str, tuple[dict, float, float, str]]] = []
        idle = 0.0
        try:
            await wait_ready(f"{base}/v1/openapi.json")
            tasks = [
                asyncio.create_task(lag.traffic(driver, args.traffic_interval, stop)),
                asyncio.create_task(lag.sample(stop)),
            ]
            started = time.perf_counter()
            async with aiohttp.ClientSession() as session, session.get(f"{base}/v1/epochs/0/proofs/{stakers[0]}") as r:
                first = await r.json()
            cold = time.perf_counter() - started
            assert merkle.verify(
                bytes.fromhex(root[2:]),
                bytes.fromhex(first["leaves"][0]["leaf"][2:]),
                [bytes.fromhex(p[2:]) for p in first["leaves"][0]["proof"]],
            )
            print(f"first proof (reads the leaves, builds and caches the tree): {cold * 1000:.0f} ms")

            await asyncio.sleep(3)  # the traffic settles
            lag.reset()
            cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
            await asyncio.sleep(args.baseline_seconds)
            idle = (cpu_seconds(server.pid) - cpu_before) / (time.perf_counter() - wall_before)
            baseline = lag.summary()

            stakers_file = Path(tmp) / "stakers.json"
            stakers_file.write_text(json.dumps(stakers))
            phases = [(f"paced at {args.rate:,.0f}/s", args.rate)] if args.rate else []
            phases.append(("as fast as they can", 0.0))
            for name, rate in phases:
                results.append((name, await load(args, base, stakers_file, rate, server.pid, lag)))
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            server.terminate()
            server.wait(timeout=30)
            log.close()
        print(f"chain lag without load: {baseline}; the indexer run process uses {100 * idle:.0f}% of a core")
        for name, (result, cpu_used, wall, loaded) in results:
            latencies, requests = result["latencies"], result["requests"]
            print(
                f"{args.clients} clients {name}, {args.seconds:g} s: {requests:,} proofs, {result['errors']} errors, "
                f"{requests / args.seconds:,.0f} proofs/s; latency p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
                f"p90 {percentile(latencies, 0.9) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
            )
            print(
                f"  indexer run process: {cpu_used:.1f} CPU s over {wall:.1f} s ({100 * cpu_used / wall:.0f}% of a "
                f"core), {1e6 * (cpu_used - idle * wall) / max(requests, 1):.0f} µs CPU per proof "
                "(beyond following the chain)"
            )
            print(f"  chain lag under this load: {loaded}")
        await pool.close()
        await w3.provider.disconnect()


async def load(args, base: str, stakers_file: Path, rate: float, pid: int, lag: Lag) -> tuple[dict, float, float, str]:
    """One load phase in a separate process: (its result, the server's CPU seconds, wall seconds, the lag)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", base, "--stakers-file", str(stakers_file), "--rate", str(rate),
        "--clients", str(args.clients), "--seconds", str(args.seconds), "--warmup", str(args.warmup),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(args.warmup)
    lag.reset()
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    out, _ = await child.communicate()
    cpu_used, wall = cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before
    loaded = lag.summary()
    await asyncio.sleep(3)  # the chain catches up before the next phase
    return json.loads(out), cpu_used, wall, loaded


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stakers", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0, help="proofs/s of the paced phase (0: none)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load")
    parser.add_argument("--warmup", type=float, default=2.0, help="load before measuring")
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--traffic-interval", type=float, default=0.2, help="seconds between stakes")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--confirmations", type=int, default=2)
    parser.add_argument(
        "--server", default=os.environ.get("INDEXER_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the load process: the API's base URL
    parser.add_argument("--stakers-file", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    asyncio.run(clients(parsed) if parsed.client else main(parsed))

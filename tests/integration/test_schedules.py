"""What `indexer run` does by itself (SPEC 9), in real processes: epochs closed, points computed, verified."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from indexer.config import load_config
from indexer.epochs.close import EpochError, add_reward
from indexer.store.database import with_database
from tests.integration.conftest import INDEXER, chain_config, until, write_config

pytestmark = pytest.mark.integration

VALIDATOR, UNREWARDED = "0x" + "a1" * 20, "0x" + "b2" * 20
LENGTH, CLOSE_AFTER = 100, 50
TOKEN = 10**18


@contextlib.asynccontextmanager
async def services(*configs: Path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """A real `indexer run` process per config, stopped (SIGTERM) at the end."""
    processes = [
        await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "run",
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        for config in configs
    ]  # fmt: skip
    try:
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()


async def log_events(process: asyncio.subprocess.Process) -> list[dict]:
    """The JSON log lines a stopped process wrote on stderr."""
    text = (await process.stderr.read()).decode()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def scrape(port: int) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def port_of(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["http"]["listen"].rsplit(":", 1)[1])


async def at(driver, ts: int) -> None:
    await driver.rpc("evm_setNextBlockTimestamp", [ts])
    await driver.mine(1)


@pytest.fixture
async def fresh_database(server_dsn: str) -> AsyncIterator[str]:
    """One more empty database (dropped at the end): the same chain indexed and closed by hand there."""
    name = f"indexer_schedules_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield with_database(server_dsn, name)
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_the_service_closes_an_epoch_by_itself_once_as_epochs_close_would(
    db, database_dsn, fresh_database, driver, deployment, anvil, tmp_path
):
    genesis = (await driver.w3.eth.get_block("latest"))["timestamp"] + 100
    top = {
        "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH,
                   "auto_close": True, "close_after_seconds": CLOSE_AFTER},
        "verify": {"interval_seconds": 0},
        "validators": [{"id": VALIDATOR, "commission_bps": 500}],
    }  # fmt: skip
    chain = chain_config(deployment, [anvil.url], confirmations=0, poll_interval_seconds=0.2)
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain], **top)
    twin = write_config(tmp_path / "twin.yaml", database_dsn, [chain], **top)  # the same, on its own HTTP port
    a, b = driver.accounts[1], driver.accounts[2]
    await driver.rpc("evm_setNextBlockTimestamp", [genesis + 10])
    await driver.stake("native_v1", a, VALIDATOR, 10 * TOKEN)
    await driver.rpc("evm_setNextBlockTimestamp", [genesis + 40])
    await driver.stake("native_v1", b, VALIDATOR, 30 * TOKEN)
    await driver.stake("native_v1", b, UNREWARDED, TOKEN)  # stake, but nobody records its reward
    await add_reward(db, load_config(config), 0, VALIDATOR, "KLY", 100_001)

    async def closed() -> bool:
        return await db.fetchval("SELECT closed_at IS NOT NULL FROM epochs WHERE epoch = 0") is True

    async with services(config, twin) as processes:
        await at(driver, genesis + LENGTH + 10)  # every chain past the end, but not past end + close_after
        await until(lambda: _indexed_to(db, genesis + LENGTH + 10))
        await asyncio.sleep(1.5)  # several schedule rounds
        assert not await closed()
        await at(driver, genesis + LENGTH + CLOSE_AFTER)  # now it is due
        await until(closed, timeout=30)
        root = await db.fetchval("SELECT root FROM epochs WHERE epoch = 0")
        with pytest.raises(EpochError, match="epoch 0 is closed"):
            await add_reward(db, load_config(config), 0, VALIDATOR, "KLY", 1)
        exported = [await scrape(port_of(c)) for c in (config, twin)]
        assert [p.returncode for p in processes] == [None, None]  # both ran all along
    events = [e for p in processes for e in await log_events(p)]
    assert [e["event"] for e in events].count("epoch_closed") == 1  # by one of the two processes, once
    [warning] = [e for e in events if e["event"] == "epoch_validators_without_reward"]
    assert warning["epoch"] == 0 and warning["validators"] == [UNREWARDED]
    allocations = [tuple(r) for r in await db.fetch("SELECT * FROM epoch_allocations ORDER BY 1, 2, 3, 4, 5")]
    assert allocations and root

    # The same chain indexed into another database and closed by hand: the same rows and root.
    by_hand = write_config(tmp_path / "by-hand.yaml", fresh_database, [chain], **top)
    for command in (["run", "--once"], ["rewards", "add", "--epoch", "0", "--validator", VALIDATOR, "--asset", "KLY",
                                        "--amount", "100001"], ["epochs", "close", "0"]):  # fmt: skip
        process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(by_hand), *command,
                                                       stdout=asyncio.subprocess.PIPE)  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode == 0, command
    assert f"root {root}" in out.decode()
    other = await asyncpg.connect(fresh_database)
    try:
        assert [tuple(r) for r in await other.fetch("SELECT * FROM epoch_allocations ORDER BY 1, 2, 3, 4, 5")] == (
            allocations
        )
    finally:
        await other.close()
    # the process that closed it exported how many staked validators had no reward (the other one 0)
    assert sorted(s[("indexer_epoch_validators_without_reward", ())] for s in exported) == [0, 1]


async def _indexed_to(db, block_time: int) -> bool:
    found = await db.fetchval("SELECT extract(epoch FROM block_time)::bigint FROM chain_cursors WHERE chain = 'local'")
    return found is not None and found >= block_time


async def test_the_service_verifies_every_interval_and_computes_yesterdays_points(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    await driver.stake("native_v1", driver.accounts[1], VALIDATOR, 10 * TOKEN)
    await driver.stake("native_v2", driver.accounts[2], "validator-one", 3 * TOKEN)
    chain = chain_config(deployment, [anvil.url], confirmations=0, poll_interval_seconds=0.2)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    config = write_config(
        tmp_path / "chains.yaml", database_dsn, [chain],
        verify={"interval_seconds": 1},
        loyalty={"asset": "ETH", "start": (yesterday - timedelta(days=2)).isoformat()},
    )  # fmt: skip
    port = port_of(config)

    async def mismatches() -> float | None:
        try:
            samples = await scrape(port)
        except aiohttp.ClientError:
            return None
        if ("indexer_verify_last_success_timestamp_seconds", ()) not in samples or not samples[
            ("indexer_verify_last_success_timestamp_seconds", ())
        ]:
            return None
        return sum(v for (name, _), v in samples.items() if name == "indexer_verify_mismatches")

    async with services(config) as processes:
        await until(lambda: _is(mismatches, 0), timeout=30)
        samples = await scrape(port)
        assert samples[("indexer_verify_readings_total", ())] > 0
        assert samples[("indexer_verify_interval_seconds", ())] == 1
        labels = {dict(k)["contract"] for (name, k) in samples if name == "indexer_verify_mismatches"}
        assert {"klyeth_v1", "klyeth", "klynft_v2"} <= labels

        await db.execute("UPDATE lst_balances SET balance = balance + 1 WHERE contract = $1", deployment.native_v1)
        await until(lambda: _positive(mismatches), timeout=10)  # within one interval (and a scrape)
        samples = await scrape(port)
        assert samples[("indexer_verify_mismatches", (("chain", "local"), ("contract", "klyeth_v1")))] > 0
        assert (
            samples[
                (
                    "indexer_verify_mismatches",
                    (
                        ("chain", "local"),
                        ("contract", "klyeth"),
                    ),
                )
            ]
            == 0
        )

        process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "reproject")
        assert await process.wait() == 0
        await until(lambda: _is(mismatches, 0), timeout=10)
        await asyncio.sleep(1.5)  # time for the points, tried again every second until the day is confirmed
    # the daily loyalty points, computed by the schedule through the last complete UTC day
    logged = await log_events(processes[0])
    points = [e for e in logged if e["event"] == "points_computed"]
    assert [(e["through"], e["by"]) for e in points] == [(yesterday.isoformat(), "schedule")]  # once


async def _is(read, value) -> bool:
    return await read() == value


async def _positive(read) -> bool:
    found = await read()
    return found is not None and found > 0

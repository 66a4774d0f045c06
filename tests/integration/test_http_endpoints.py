"""/metrics, /healthz and /readyz served on 127.0.0.1 against real Postgres, scraped with a real HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from indexer.http import HttpServer
from indexer.metrics import Metrics

HOST = "127.0.0.1"
POLL = 2.0  # seconds: the stall limit is 5 x POLL = 10 s


def chain(name: str, poll: float = POLL) -> SimpleNamespace:
    return SimpleNamespace(name=name, poll_interval_seconds=poll)


async def insert_cursor(
    pool: asyncpg.Pool, name: str, *, block: int, head: int, confirmed: int, age: float = 0.0, block_age: float = 0.0
) -> None:
    """A chain_cursors row as a watcher writes it; `age`/`block_age`: seconds since the update / the block."""
    await pool.execute(
        """INSERT INTO chain_cursors (chain, chain_id, block_number, block_hash, block_time, head_block,
                                      confirmed_block, updated_at)
           VALUES ($1, 31337, $2, $3, now() - make_interval(secs => $6), $4, $5, now() - make_interval(secs => $7))
           ON CONFLICT (chain) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
               block_time = EXCLUDED.block_time, head_block = EXCLUDED.head_block,
               confirmed_block = EXCLUDED.confirmed_block, updated_at = EXCLUDED.updated_at""",
        name,
        block,
        f"0x{block:064x}",
        head,
        confirmed,
        block_age,
        age,
    )


async def insert_event(pool: asyncpg.Pool, name: str, block: int, log_index: int, *, unresolved: bool) -> None:
    await pool.execute(
        """INSERT INTO events (chain, chain_id, contract, contract_kind, contract_version, block_number, block_hash,
                               block_time, tx_hash, log_index, event_type, staker, pool, pool_hash, amount, asset)
           VALUES ($1, 31337, $2, 'native', 2, $3, $4, now(), $5, $6, 'stake', $7, $8, $9, 10, 'ETH')""",
        name,
        "0x" + "ab" * 20,
        block,
        f"0x{block:064x}",
        "0x" + "02" * 32,
        log_index,
        "0x" + "11" * 20,
        None if unresolved else "validator-1",
        "0x" + "33" * 32,
    )


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gauge(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, chains, **options) -> AsyncIterator[tuple[HttpServer, str]]:
    server = HttpServer(Metrics(CollectorRegistry()), pool, chains, **options)
    port = await server.start(HOST, 0)
    try:
        yield server, f"http://{HOST}:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with client.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_metrics_gauges_equal_the_database(db: asyncpg.Pool, client: aiohttp.ClientSession) -> None:
    await insert_cursor(db, "local", block=120, head=150, confirmed=138, block_age=90)
    await insert_cursor(db, "other", block=500, head=500, confirmed=488, block_age=3600)
    await insert_event(db, "local", 100, 0, unresolved=True)
    await insert_event(db, "local", 101, 1, unresolved=True)
    await insert_event(db, "local", 102, 2, unresolved=False)
    # The projector has folded up to 40 s before the confirmed block time it may reach (local's, the smaller).
    frontier = await db.fetchval("SELECT min(confirmed_time) - 40 FROM v_chain_frontier")
    await db.execute("INSERT INTO projector_state (frontier_time) VALUES ($1)", frontier)

    async with running(db, [chain("local"), chain("other")], projected_chains=["local", "other"]) as (_, base):
        status, content_type, text = await get(client, f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = parse(text)
    rows = await db.fetch("SELECT * FROM v_indexer_status ORDER BY chain")
    assert [r["chain"] for r in rows] == ["local", "other"]
    for row in rows:
        name = row["chain"]
        assert gauge(samples, "indexer_head_block", chain=name) == row["head_block"]
        assert gauge(samples, "indexer_indexed_block", chain=name) == row["indexed_block"]
        assert gauge(samples, "indexer_confirmed_block", chain=name) == row["confirmed_block"]
        assert gauge(samples, "indexer_lag_blocks", chain=name) == row["lag_blocks"]
        assert gauge(samples, "indexer_unresolved_pools", chain=name) == row["unresolved_pools"]
        assert gauge(samples, "indexer_cursor_updated_timestamp_seconds", chain=name) == pytest.approx(
            row["updated_at"].timestamp()
        )
    assert gauge(samples, "indexer_lag_blocks", chain="local") == 30
    assert gauge(samples, "indexer_unresolved_pools", chain="local") == 2
    assert gauge(samples, "indexer_lag_seconds", chain="local") == pytest.approx(90, abs=5)
    assert gauge(samples, "indexer_lag_seconds", chain="other") == 0  # at the head, however old its block
    assert gauge(samples, "indexer_projector_lag_seconds") == 40
    assert gauge(samples, "indexer_projector_frontier_timestamp_seconds") == frontier
    assert gauge(samples, "indexer_database_up") == 1


async def test_metrics_follow_the_database_between_scrapes(db: asyncpg.Pool, client: aiohttp.ClientSession) -> None:
    await insert_cursor(db, "local", block=10, head=20, confirmed=8)
    await insert_cursor(db, "gone", block=1, head=1, confirmed=1)
    async with running(db, [chain("local")]) as (_, base):
        first = parse((await get(client, f"{base}/metrics"))[2])
        # another process advances the chain; a chain's cursor disappears
        await insert_cursor(db, "local", block=20, head=25, confirmed=13)
        await db.execute("DELETE FROM chain_cursors WHERE chain = 'gone'")
        second = parse((await get(client, f"{base}/metrics"))[2])
    assert gauge(first, "indexer_indexed_block", chain="local") == 10
    assert gauge(first, "indexer_indexed_block", chain="gone") == 1
    assert gauge(second, "indexer_indexed_block", chain="local") == 20
    assert gauge(second, "indexer_head_block", chain="local") == 25
    assert gauge(second, "indexer_indexed_block", chain="gone") is None


async def test_healthz_answers_while_the_process_runs(db: asyncpg.Pool, client: aiohttp.ClientSession) -> None:
    async with running(db, [chain("local")]) as (_, base):
        status, content_type, body = await get(client, f"{base}/healthz")
    assert status == 200
    assert content_type.startswith("application/json")
    assert body == '{"status": "ok"}'


async def test_readyz_200_when_every_chain_progresses(db: asyncpg.Pool, client: aiohttp.ClientSession) -> None:
    await insert_cursor(db, "local", block=10, head=10, confirmed=10, age=1)
    await insert_cursor(db, "other", block=10, head=10, confirmed=10, age=9)
    async with running(db, [chain("local"), chain("other")]) as (_, base):
        async with client.get(f"{base}/readyz") as response:
            assert response.status == 200
            body = await response.json()
    assert body == {"status": "ready", "checks": {"database": "ok", "chains": {"local": "ok", "other": "ok"}}}


async def test_readyz_503_names_the_stalled_chain_then_200_after_it_moves(
    db: asyncpg.Pool, client: aiohttp.ClientSession
) -> None:
    await insert_cursor(db, "local", block=10, head=10, confirmed=10, age=42)
    await insert_cursor(db, "other", block=10, head=10, confirmed=10, age=1)
    async with running(db, [chain("local"), chain("other")]) as (_, base):
        async with client.get(f"{base}/readyz") as response:
            stalled = response.status, await response.json()
        await insert_cursor(db, "local", block=11, head=11, confirmed=11)
        async with client.get(f"{base}/readyz") as response:
            recovered = response.status, await response.json()
    assert stalled == (
        503,
        {
            "status": "not ready",
            "checks": {"database": "ok", "chains": {"local": "no progress for 42 s (limit 10 s)", "other": "ok"}},
        },
    )
    assert recovered[0] == 200


async def test_readyz_stall_limit_is_n_poll_intervals(db: asyncpg.Pool, client: aiohttp.ClientSession) -> None:
    await insert_cursor(db, "local", block=10, head=10, confirmed=10, age=7)
    async with running(db, [chain("local", poll=2.0)], stall_intervals=3) as (_, base):
        status, _, body = await get(client, f"{base}/readyz")
    assert status == 503
    assert "no progress for 7 s (limit 6 s)" in body


async def test_readyz_503_for_a_chain_without_a_cursor_after_the_limit(
    db: asyncpg.Pool, client: aiohttp.ClientSession
) -> None:
    async with running(db, [chain("local")]) as (server, base):
        assert (await get(client, f"{base}/readyz"))[0] == 200  # just started: a first batch is on its way
        server.started = time.monotonic() - 11
        status, _, body = await get(client, f"{base}/readyz")
    assert status == 503
    assert "local" in body and "no cursor yet" in body


class TcpProxy:
    """Forwards 127.0.0.1:<port> to Postgres; `stop()` refuses and cuts connections like a stopped server."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream  # a unix socket path, or (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(self.upstream, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


def proxied(dsn: str) -> tuple[str | tuple[str, int], str]:
    """The upstream address of `dsn` and a DSN template (`{port}`) reaching the same database via 127.0.0.1."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    socket_dir, port = query.pop("host", None), int(query.pop("port", None) or parts.port or 5432)
    upstream: str | tuple[str, int] = (
        f"{socket_dir}/.s.PGSQL.{port}" if socket_dir and socket_dir.startswith("/") else (parts.hostname, port)
    )
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + HOST + ":{port}"
    return upstream, f"{parts.scheme}://{netloc}{parts.path}" + (f"?{urlencode(query)}" if query else "")


async def test_readyz_503_while_the_database_is_down_then_200_after_recovery(
    db: asyncpg.Pool, database_dsn: str, client: aiohttp.ClientSession
) -> None:
    await insert_cursor(db, "local", block=10, head=10, confirmed=10)
    upstream, template = proxied(database_dsn)
    proxy = TcpProxy(upstream)
    await proxy.start()
    pool = await asyncpg.create_pool(template.format(port=proxy.port), min_size=1, max_size=2)
    try:
        async with running(pool, [chain("local")], db_timeout=1.0) as (_, base):
            assert (await get(client, f"{base}/readyz"))[0] == 200
            assert (await get(client, f"{base}/metrics"))[0] == 200

            await proxy.stop()  # the database goes away
            async with client.get(f"{base}/readyz") as response:
                down = response.status, await response.json()
            assert (await get(client, f"{base}/healthz"))[0] == 200  # alive, just not ready
            status, _, text = await get(client, f"{base}/metrics")  # still served, from the process's counters
            assert status == 200
            assert gauge(parse(text), "indexer_database_up") == 0
            assert gauge(parse(text), "indexer_indexed_block", chain="local") == 10  # the last value read

            await proxy.start()  # back, on the same port
            await insert_cursor(db, "local", block=11, head=11, confirmed=11)
            for _ in range(20):  # the pool reconnects on its next acquire
                async with client.get(f"{base}/readyz") as response:
                    recovered = response.status, await response.json()
                if recovered[0] == 200:
                    break
                await asyncio.sleep(0.1)
    finally:
        await pool.close()
        with contextlib.suppress(AssertionError):
            await proxy.stop()
    assert down[0] == 503
    assert down[1]["status"] == "not ready"
    assert down[1]["checks"]["database"].startswith("unreachable")
    assert down[1]["checks"]["chains"] == {"local": "unknown: database unreachable"}
    assert str(proxy.port) not in str(down[1])  # no address, DSN or driver message in the body
    assert recovered == (200, {"status": "ready", "checks": {"database": "ok", "chains": {"local": "ok"}}})


async def test_metrics_during_a_real_backfill_match_the_database(
    db: asyncpg.Pool, client: aiohttp.ClientSession, driver, deployment, anvil
) -> None:
    from indexer.config import parse_config
    from indexer.localchain import realistic_mix
    from indexer.service import index_chains
    from tests.integration.conftest import chain_config, indexed_to_head, until

    await realistic_mix(driver, 7)
    await driver.mine(50)
    spec = chain_config(deployment, [anvil.url], initial_block_range=3, max_block_range=3, confirmations=2)
    config = parse_config({"validators": [{"id": "validator-one"}], "chains": [spec]})
    stop = asyncio.Event()
    async with running(db, config.chains) as (_, base):
        indexing = asyncio.create_task(index_chains(config, db, stop, once=False, project=False))
        try:
            scraped: list[float] = []
            while not await indexed_to_head(db, driver):  # scrape while the backfill runs
                assert not indexing.done(), indexing.exception()
                samples = parse((await get(client, f"{base}/metrics"))[2])
                indexed = gauge(samples, "indexer_indexed_block", chain="local")
                row = await db.fetchrow("SELECT indexed_block FROM v_indexer_status WHERE chain = 'local'")
                if indexed is not None:
                    assert row is not None and indexed <= row["indexed_block"]  # read from the database, not ahead
                    scraped.append(indexed)
                await asyncio.sleep(0.01)
            await until(lambda: indexed_to_head(db, driver))
            samples = parse((await get(client, f"{base}/metrics"))[2])
            status, _, ready = await get(client, f"{base}/readyz")
        finally:
            stop.set()
            await indexing
    assert len(set(scraped)) >= 2, scraped  # scraped mid-backfill, not only at the end
    assert scraped == sorted(scraped)  # progress is monotonic
    row = await db.fetchrow("SELECT * FROM v_indexer_status WHERE chain = 'local'")
    assert gauge(samples, "indexer_indexed_block", chain="local") == row["indexed_block"]
    assert gauge(samples, "indexer_head_block", chain="local") == row["head_block"]
    assert gauge(samples, "indexer_confirmed_block", chain="local") == row["confirmed_block"]
    assert gauge(samples, "indexer_lag_blocks", chain="local") == row["lag_blocks"] == 0
    assert row["confirmed_block"] == row["head_block"] - 2
    assert status == 200, ready

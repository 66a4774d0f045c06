"""The social feed source, driven by the one follow loop, against real Postgres: file and HTTP feeds, failures."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from collections import Counter
from decimal import Decimal

import pytest
from aiohttp import web
from eth_account import Account
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from indexer.chains.social import SocialSource
from indexer.config import SocialChain, parse_config
from indexer.errors import ConfigError
from indexer.metrics import Metrics
from indexer.projector.runner import Projector
from indexer.store.feeds import stored_records
from indexer.watcher import Watcher
from tests.signed_feed import signed as sign_record
from tests.signed_feed import write_jsonl

NOW = 1_700_000_000
STAKERS = [Account.from_key(bytes([i + 11]) * 32) for i in range(3)]

pytestmark = pytest.mark.integration


def signed(key, *, issued_at=NOW - 60, deadline=NOW + 3600, **fields) -> dict:
    """A record signed for `key` (see tests/signed_feed.py), dated around NOW by default."""
    return sign_record(key, issued_at=issued_at, deadline=deadline, **fields)


VALID = [
    signed(STAKERS[0], points=500, nonce=1, validator="validator-one"),
    signed(STAKERS[1], points=70, nonce=3, validator="validator-two", issued_at=NOW - 30),
    signed(STAKERS[0], action="undelegate", points=200, nonce=2, validator="validator-one", issued_at=NOW - 10),
]
FORGED = signed(STAKERS[0], forger=STAKERS[2], points=10**6, nonce=50)
REPLAYED = signed(STAKERS[0], points=999, nonce=1, validator="validator-evil", issued_at=NOW - 5)
EXPIRED = signed(STAKERS[1], points=5, nonce=4, issued_at=NOW - 7200, deadline=NOW - 3600)
MIXED = [VALID[0], FORGED, VALID[1], REPLAYED, EXPIRED, VALID[2]]
EXPECTED_REJECTIONS = Counter({"bad_signature": 1, "replayed_nonce": 1, "expired": 1})


def social(chain: SocialChain, db, **kwargs) -> SocialSource:
    """The feed's source as the service builds it: it resumes from the records the event log holds."""
    return SocialSource(chain, load_stored=functools.partial(stored_records, db, chain.name), **kwargs)


async def poll_once(source: SocialSource, db, now: int | None = None) -> tuple[int, Counter]:
    """One poll of the feed through the follow loop, at unix time `now`: (records stored, rejections by reason)."""
    if now is not None:
        source.clock = lambda: now
    stored, rejections = source.accepted_total, source.rejections.copy()
    await Watcher(source, source.chain, db).run(asyncio.Event(), once=True)
    return source.accepted_total - stored, source.rejections - rejections


async def follow(source: SocialSource, db, stop: asyncio.Event, *, once: bool = False) -> None:
    """The follow loop on the feed until `stop` (or one poll)."""
    await Watcher(source, source.chain, db).run(stop, once=once)


def feed(url: str, name: str = "social", interval: float = 0.05) -> SocialChain:
    return SocialChain(name=name, kind="social", url=url, poll_interval_seconds=interval)


async def rows(db, chain: str = "social"):
    return [
        tuple(r)
        for r in await db.fetch(
            """SELECT tx_hash, log_index, event_type, staker, pool, amount, asset, contract, contract_kind,
                      block_number, extract(epoch FROM block_time)::bigint AS t
                 FROM events WHERE chain = $1 ORDER BY block_number, tx_hash""",
            chain,
        )
    ]


def expected_rows(records):
    out = []
    for r in sorted(records, key=lambda r: (r["issued_at"], r["staker"].lower(), r["nonce"])):
        staker = r["staker"].lower()
        out.append(
            (f"{staker}:{r['nonce']:078d}", 0, f"social_{r['action']}", staker, r["validator"], r["points"],
             "SOCIAL", "social:social", "social", r["issued_at"], r["issued_at"])
        )  # fmt: skip
    return out


async def test_file_feed_stores_only_valid_records_once(db, tmp_path):
    path = tmp_path / "feed.jsonl"
    write_jsonl(path, MIXED, extra_lines=("", "this is not json", "   "))
    with capture_logs() as logs:
        source = social(feed(str(path)), db)
        accepted, rejected = await poll_once(source, db, now=NOW)
    assert accepted == 3
    assert rejected == EXPECTED_REJECTIONS + Counter({"malformed": 1})
    assert await rows(db) == expected_rows(VALID)
    assert source.rejections == rejected

    rejections = [e for e in logs if e["event"] == "feed_record_rejected"]
    assert sorted(e["reason"] for e in rejections) == ["bad_signature", "expired", "malformed", "replayed_nonce"]
    forged_log = next(e for e in rejections if e["reason"] == "bad_signature")
    assert forged_log["staker"] == STAKERS[0].address.lower() and forged_log["nonce"] == 50
    text = json.dumps(logs, default=str)
    for record in MIXED:
        assert record["signature"] not in text and record["signature"][2:] not in text

    cursor = await db.fetchrow("SELECT block_number, confirmed_block FROM chain_cursors WHERE chain = 'social'")
    assert cursor["block_number"] == cursor["confirmed_block"] == NOW

    # Polling again: nothing new, nothing re-logged, the poll clock moves on.
    with capture_logs() as logs:
        assert await poll_once(source, db, now=NOW + 5) == (0, Counter())
    assert not [e for e in logs if e["event"] == "feed_record_rejected"]
    assert await rows(db) == expected_rows(VALID)
    assert await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'social'") == NOW + 5

    # A restart (fresh source) re-reads the whole feed without duplicates; the replay is still caught.
    restarted = social(feed(str(path)), db)
    accepted, rejected = await poll_once(restarted, db, now=NOW + 6)
    assert accepted == 0
    assert rejected == EXPECTED_REJECTIONS + Counter({"malformed": 1})
    assert await rows(db) == expected_rows(VALID)

    # An appended valid record lands on the next poll, once; the clock never goes back.
    late = signed(STAKERS[2], points=42, nonce=0, validator="validator-two", issued_at=NOW + 20, deadline=NOW + 60)
    write_jsonl(path, [*MIXED, late], extra_lines=("this is not json",))
    assert await poll_once(restarted, db, now=NOW + 1) == (1, Counter())
    assert await rows(db) == expected_rows([*VALID, late])
    assert await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'social'") == NOW + 7
    assert await poll_once(restarted, db, now=NOW + 8) == (0, Counter())
    assert await db.fetchval("SELECT count(*) FROM events") == 4


async def test_rejected_record_does_not_use_up_its_nonce(db, tmp_path):
    path = tmp_path / "feed.jsonl"
    too_early = signed(STAKERS[0], nonce=9, issued_at=NOW + 1000, deadline=NOW + 5000)
    write_jsonl(path, [too_early])
    source = social(feed(str(path)), db)
    assert await poll_once(source, db, now=NOW) == (0, Counter({"issued_in_future": 1}))
    # Time passes: the same record is now acceptable (a transient verdict is judged again).
    assert await poll_once(source, db, now=NOW + 800) == (1, Counter())
    assert [r[0] for r in await rows(db)] == [f"{STAKERS[0].address.lower()}:{9:078d}"]

    # A forged record with nonce 10 is rejected; the staker's real nonce 10 is still accepted later.
    write_jsonl(path, [too_early, signed(STAKERS[0], forger=STAKERS[1], nonce=10)])
    assert await poll_once(source, db, now=NOW + 801) == (0, Counter({"bad_signature": 1}))
    write_jsonl(path, [too_early, signed(STAKERS[0], forger=STAKERS[1], nonce=10), signed(STAKERS[0], nonce=10)])
    assert await poll_once(source, db, now=NOW + 802) == (1, Counter())
    assert len(await rows(db)) == 2


async def test_two_feeds_keep_separate_nonces(db, tmp_path):
    path = tmp_path / "feed.jsonl"
    write_jsonl(path, VALID)
    first = social(feed(str(path), name="social"), db)
    second = social(feed(str(path), name="social-b"), db)
    assert (await poll_once(first, db, now=NOW))[0] == 3
    assert (await poll_once(second, db, now=NOW))[0] == 3
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'social-b'") == 3


async def test_missing_file_is_logged_and_retried(db, tmp_path):
    path = tmp_path / "later.jsonl"
    with capture_logs() as logs:
        source = social(feed(str(path)), db)
        assert await poll_once(source, db, now=NOW) == (0, Counter())
    assert source.failures == 1 and source.last_error
    assert any(e["event"] == "feed_unavailable" for e in logs)
    assert await db.fetchval("SELECT count(*) FROM chain_cursors") == 0
    write_jsonl(path, VALID)
    assert await poll_once(source, db, now=NOW) == (3, Counter())
    assert source.last_error is None


class FeedServer:
    """A local HTTP feed on 127.0.0.1: answers GET with the JSON array `records`, or fails `fail` times first."""

    def __init__(self, records: list) -> None:
        self.records = records
        self.fail = 0
        self.status = 500
        self.requests = 0
        self.body: bytes | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=self.status, text="boom")
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        return web.json_response(self.records)

    async def __aenter__(self) -> FeedServer:
        app = web.Application()
        app.router.add_get("/feed", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/feed"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


async def test_http_feed_gives_the_same_result(db):
    async with FeedServer(MIXED + ["not an object"]) as server:
        source = social(feed(server.url), db)
        try:
            accepted, rejected = await poll_once(source, db, now=NOW)
            assert accepted == 3
            assert rejected == EXPECTED_REJECTIONS + Counter({"malformed": 1})
            assert await rows(db) == expected_rows(VALID)
            assert await poll_once(source, db, now=NOW + 1) == (0, Counter())
        finally:
            await source.close()
        restarted = social(feed(server.url), db)
        try:
            assert (await poll_once(restarted, db, now=NOW + 2))[0] == 0
        finally:
            await restarted.close()
    assert await rows(db) == expected_rows(VALID)


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_http_errors_are_logged_and_the_next_poll_succeeds(db, status):
    async with FeedServer(VALID) as server:
        server.fail, server.status = 2, status
        with capture_logs() as logs:
            source = social(feed(server.url), db)
            try:
                assert await poll_once(source, db, now=NOW) == (0, Counter())
                assert f"HTTP {status}" in source.last_error
                assert await poll_once(source, db, now=NOW + 1) == (0, Counter())
                assert await poll_once(source, db, now=NOW + 2) == (3, Counter())
            finally:
                await source.close()
        assert source.failures == 2 and source.last_error is None
        assert [e["event"] for e in logs].count("feed_unavailable") == 2
    assert await rows(db) == expected_rows(VALID)


async def test_http_answer_that_is_not_an_array_is_a_failed_poll(db):
    async with FeedServer(VALID) as server:
        source = social(feed(server.url), db)
        try:
            server.body = b'{"records": []}'
            assert await poll_once(source, db, now=NOW) == (0, Counter())
            assert "not an array" in source.last_error
            server.body = b"<html>"
            assert await poll_once(source, db, now=NOW) == (0, Counter())
            server.body = None
            assert (await poll_once(source, db, now=NOW))[0] == 3
        finally:
            await source.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_feed_keeps_the_source_running(db):
    port = _closed_port()
    stop = asyncio.Event()
    with capture_logs() as logs:
        source = social(feed(f"http://127.0.0.1:{port}/feed", interval=0.05), db, request_timeout=2)
        task = asyncio.create_task(follow(source, db, stop))
        try:
            for _ in range(200):
                if source.failures >= 3:
                    break
                await asyncio.sleep(0.02)
            assert source.failures >= 3 and not task.done()
            # The feed comes up on that port: the running source picks it up.
            wall = int(time.time())
            fresh = [signed(k, nonce=1, issued_at=wall - 10, deadline=wall + 3600) for k in STAKERS]
            server = FeedServer(fresh)
            app = web.Application()
            app.router.add_get("/feed", server.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                for _ in range(250):
                    if await db.fetchval("SELECT count(*) FROM events WHERE chain = 'social'") == 3:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await runner.cleanup()
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await source.close()
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'social'") == 3
    assert any(e["event"] == "feed_unavailable" for e in logs)


async def test_run_once_polls_once(db, tmp_path):
    path = tmp_path / "feed.jsonl"
    wall = int(time.time())
    write_jsonl(path, [signed(k, nonce=1, issued_at=wall - 10, deadline=wall + 3600) for k in STAKERS])
    source = social(feed(str(path)), db)
    await follow(source, db, asyncio.Event(), once=True)
    assert source.polls == 1 and source.accepted_total == 3


async def test_an_unreadable_feed_shows_as_retrying_in_status_and_recovers(db, tmp_path):
    path = tmp_path / "later.jsonl"
    source = social(feed(str(path), name="social"), db)
    try:
        await follow(source, db, asyncio.Event(), once=True)
        row = await db.fetchrow("SELECT state, error FROM v_indexer_status WHERE chain = 'social'")
        assert row["state"] == "retrying" and row["error"]
        path.write_text("")
        await follow(source, db, asyncio.Event(), once=True)  # the next poll reads it
    finally:
        await source.close()
    assert await db.fetchval("SELECT state FROM v_indexer_status WHERE chain = 'social'") == "ok"


async def test_rejections_are_counted_by_reason_in_the_metrics(db, tmp_path):
    from prometheus_client import CollectorRegistry

    from indexer.metrics import Metrics

    path = tmp_path / "feed.jsonl"
    write_jsonl(path, MIXED)
    registry = CollectorRegistry()
    source = social(feed(str(path)), db, metrics=Metrics(registry))
    try:
        await poll_once(source, db, now=NOW)
    finally:
        await source.close()
    counted = {
        reason: registry.get_sample_value("indexer_feed_records_rejected_total", {"feed": "social", "reason": reason})
        for reason in EXPECTED_REJECTIONS
    }
    assert counted == {reason: float(n) for reason, n in EXPECTED_REJECTIONS.items()}


async def projected(db) -> dict[str, list[tuple]]:
    return {
        "validators": [tuple(r) for r in await db.fetch("SELECT * FROM v_validator_points ORDER BY 1, 2")],
        "positions": [tuple(r) for r in await db.fetch("SELECT * FROM positions ORDER BY 1, 2, 3")],
        "delegations": [tuple(r) for r in await db.fetch("SELECT * FROM social_delegations ORDER BY 1, 2, 3")],
    }


async def test_delegations_are_projected_on_the_feed_clock_and_a_late_record_rebuilds(db, tmp_path):
    path = tmp_path / "feed.jsonl"
    write_jsonl(path, VALID)  # issued at NOW - 60 (delegate 500), NOW - 30 (other staker), NOW - 10 (undelegate 200)
    chain = {"name": "social", "kind": "social", "url": str(path), "settle_seconds": 60, "weight": "2.5"}
    config = parse_config({"chains": [chain]})
    metrics = Metrics(CollectorRegistry())
    source, projector = social(config.chains[0], db, metrics=metrics), Projector(db, config)
    one, two = STAKERS[0].address.lower(), STAKERS[1].address.lower()
    late_total = lambda: metrics.registry.get_sample_value("indexer_feed_records_late_total", {"feed": "social"})  # noqa: E731

    await poll_once(source, db, now=NOW)
    assert await projector.step() == 1  # up to the poll clock less the settle time: only the first record
    assert (await projected(db))["validators"] == [("validator-one", "SOCIAL", 500, Decimal(1250))]

    await poll_once(source, db, now=NOW + 100)
    assert await projector.step() == 2
    assert await projected(db) == {
        "validators": [("validator-one", "SOCIAL", 300, Decimal(750)), ("validator-two", "SOCIAL", 70, Decimal(175))],
        "positions": sorted([(one, "validator-one", "SOCIAL", 300), (two, "validator-two", "SOCIAL", 70)]),
        "delegations": sorted([("social", one, "validator-one", 300), ("social", two, "validator-two", 70)]),
    }

    # published only now, dated before what was already folded: the projections are rebuilt with it in place
    late = signed(STAKERS[1], action="undelegate", points=50, nonce=9, validator="validator-two", issued_at=NOW - 20)
    write_jsonl(path, [*VALID, late])
    with capture_logs() as logs:
        assert await poll_once(source, db, now=NOW + 200) == (1, Counter())
    assert [e["oldest_issued_at"] for e in logs if e["event"] == "feed_records_late"] == [NOW - 20]
    assert late_total() == 1
    assert await projector.step() == 4  # everything again
    after = await projected(db)
    assert after["delegations"] == sorted([("social", one, "validator-one", 300), ("social", two, "validator-two", 20)])
    assert await Projector(db, config).reproject() == 4
    assert await projected(db) == after

    # a record dated after the folded part but within the settle time is simply folded next
    fresh = signed(STAKERS[2], points=5, nonce=1, validator="validator-two", issued_at=NOW + 180)
    write_jsonl(path, [*VALID, late, fresh])
    await poll_once(source, db, now=NOW + 250)
    assert await projector.step() == 1
    assert await db.fetchval("SELECT count(*) FROM reorgs") == 1
    assert late_total() == 1


async def test_social_points_cannot_share_an_asset_with_a_staked_token(db, tmp_path):
    config = parse_config({"chains": [
        {"name": "social", "kind": "social", "url": str(tmp_path / "f.jsonl"), "asset": "ETH"},
        {"name": "eth", "kind": "evm", "chain_id": 1, "rpc": ["http://127.0.0.1:1"],
         "contracts": [{"name": "v1", "kind": "native", "version": 1, "address": "0x" + "e1" * 20,
                        "start_block": 0, "asset": "ETH"}]},
    ]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"chains\.social\.asset: ETH is also a staked token's asset"):
        Projector(db, config)

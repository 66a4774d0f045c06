"""A fault-injecting JSON-RPC proxy for tests: forwards POSTs to an upstream node and misbehaves on a plan.

    plan = FaultPlan([Rule(Fault.HTTP_500, start=2, every=5, times=3), Rule(Fault.STALE_LOGS, method="eth_getLogs")])
    async with FaultProxy(anvil.url, plan) as proxy:
        ...  # point the indexer at proxy.url (any path: the proxy ignores it)
    assert proxy.injected[Fault.HTTP_500] == 3

The plan is deterministic: each rule counts the requests it matches and arms itself on
matching request `start + 1`, `start + 1 + every`, ... at most `times` times (`chance` < 1
draws from the plan's seeded random). An armed rule fires on the next request it can be
applied to (a batch for BATCH_AS_ERROR; an `eth_getLogs` answer holding logs for
STALE_LOGS), so every planned fault really happens once enough traffic passes. The first
armed rule (in plan order) wins a request; at most one fault per request.

`max_faults_per_call` bounds how often in a row one logical call (same methods and
params, whatever the JSON-RPC ids) is failed: a client that retries it gets a good answer
after that many faults, so a plan can be dense and still let a bounded retry loop finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"


class Fault(StrEnum):
    HTTP_429 = "http_429"  # 429 Too Many Requests
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    TIMEOUT = "timeout"  # hold the request for `hold_seconds`, then close the connection unanswered
    TRUNCATED = "truncated_json"  # the upstream body cut in half
    BATCH_AS_ERROR = "batch_as_error"  # a batch answered by one JSON-RPC error object
    RATE_LIMIT_ERROR = "rate_limit_error"  # JSON-RPC error objects saying "rate limit exceeded" (HTTP 200)
    STALE_LOGS = "stale_logs"  # every log of an eth_getLogs answer carries another block hash


_STATUS = {Fault.HTTP_429: 429, Fault.HTTP_500: 500, Fault.HTTP_502: 502, Fault.HTTP_503: 503}


@dataclass
class Rule:
    """Inject `fault` into requests holding a call of `method` (any request when None)."""

    fault: Fault
    method: str | None = None
    start: int = 0  # matching requests passed over before the first fault
    every: int = 1  # then one fault per `every` matching requests
    times: int | None = 1  # at most this many faults; None: no limit
    chance: float = 1.0  # probability (seeded) that a due fault is armed
    seen: int = field(default=0, init=False)  # matching requests so far
    armed: int = field(default=0, init=False)  # faults due, not yet injected
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.start < 0 or self.every < 1 or (self.times is not None and self.times < 0):
            raise ValueError(f"bad rule {self!r}")

    def matches(self, methods: Sequence[str]) -> bool:
        return self.method is None or self.method in methods

    def count(self, rng: random.Random) -> None:
        """Note one more matching request; arm a fault if one is due."""
        self.seen += 1
        position = self.seen - self.start - 1
        room = self.times is None or self.injected + self.armed < self.times
        if position >= 0 and position % self.every == 0 and room and (self.chance >= 1 or rng.random() < self.chance):
            self.armed += 1

    @property
    def done(self) -> bool:
        """Whether every planned fault was injected."""
        return self.times is not None and self.injected >= self.times


@dataclass(frozen=True)
class Injection:
    """One fault injected: the proxy's request number, the fault, the methods of the request."""

    request: int
    fault: Fault
    methods: tuple[str, ...]


class FaultPlan:
    """Rules, a seeded random for `chance`, and the per-call fault budget."""

    def __init__(self, rules: Sequence[Rule] = (), *, seed: int = 0, max_faults_per_call: int | None = 3) -> None:
        self.rules = list(rules)
        self.rng = random.Random(seed)
        self.max_faults_per_call = max_faults_per_call

    @classmethod
    def always(cls, fault: Fault) -> FaultPlan:
        """Every request gets `fault` (a dead node)."""
        return cls([Rule(fault, times=None)], max_faults_per_call=None)

    @property
    def done(self) -> bool:
        return all(rule.done for rule in self.rules)


def stale_hash(block_hash: str) -> str:
    """A different, well-formed 32-byte hash standing for the same height on another branch."""
    return "0x" + hashlib.sha256(b"stale:" + block_hash.lower().encode()).hexdigest()


class FaultProxy:
    """An aiohttp server on 127.0.0.1 (a free port) in front of `upstream`; an async context manager."""

    def __init__(
        self, upstream: str, plan: FaultPlan | None = None, *, hold_seconds: float = 1.5, max_body: int = 1 << 24
    ) -> None:
        self.upstream = upstream
        self.plan = plan or FaultPlan()
        self.hold_seconds = hold_seconds
        self.max_body = max_body
        self.requests = 0  # JSON-RPC POSTs received
        self.forwarded = 0  # of which answered by the upstream (faults after the upstream included)
        self.methods: Counter[str] = Counter()  # calls received, by method
        self.injected: Counter[Fault] = Counter()
        self.injections: list[Injection] = []
        self.stale_blocks: list[int] = []  # block numbers of the logs given a stale hash
        self.url = ""
        self._streak: dict[str, int] = {}  # faults in a row per logical call
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> FaultProxy:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("POST", "/{path:.*}", self._handle)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://{HOST}:{sock.getsockname()[1]}"
        return self

    async def close(self) -> None:
        self._closing.set()  # releases held (timeout) requests at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- the request path -------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests += 1
        number = self.requests
        calls = _calls(body)
        methods = tuple(str(c.get("method")) for c in calls)
        self.methods.update(methods)
        key = json.dumps([[c.get("method"), c.get("params")] for c in calls], sort_keys=True)
        is_batch = body.lstrip()[:1] == b"["

        applicable = [rule for rule in self.plan.rules if rule.matches(methods)]
        for rule in applicable:
            rule.count(self.plan.rng)
        budget = self.plan.max_faults_per_call
        may_fault = budget is None or self._streak.get(key, 0) < budget

        chosen = None
        if may_fault:
            chosen = next(
                (
                    r
                    for r in applicable
                    if r.armed and r.fault is not Fault.STALE_LOGS and (is_batch or r.fault is not Fault.BATCH_AS_ERROR)
                ),
                None,
            )
        if chosen is not None:
            self._record(chosen, number, methods, key)
            return await self._fail(request, chosen.fault, body, calls, is_batch)

        status, payload = await self._forward(body)
        stale = next((r for r in applicable if r.armed and r.fault is Fault.STALE_LOGS), None)
        if may_fault and stale is not None and status == 200:
            rewritten = self._make_stale(payload, calls)
            if rewritten is not None:
                self._record(stale, number, methods, key)
                return web.Response(status=200, body=rewritten, content_type="application/json")
        self._streak.pop(key, None)
        return web.Response(status=status, body=payload, content_type="application/json")

    def _record(self, rule: Rule, number: int, methods: tuple[str, ...], key: str) -> None:
        rule.armed -= 1
        rule.injected += 1
        self.injected[rule.fault] += 1
        self.injections.append(Injection(number, rule.fault, methods))
        self._streak[key] = self._streak.get(key, 0) + 1

    async def _forward(self, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None, "proxy not started"
        async with self._session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as answer:
            self.forwarded += 1
            return answer.status, await answer.read()

    async def _fail(
        self, request: web.Request, fault: Fault, body: bytes, calls: list[dict[str, Any]], is_batch: bool
    ) -> web.StreamResponse:
        if fault in _STATUS:
            headers = {"Retry-After": "0"} if fault is Fault.HTTP_429 else {}
            return web.Response(status=_STATUS[fault], text=f"injected {fault}", headers=headers)
        if fault is Fault.TIMEOUT:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.hold_seconds)
            if request.transport is not None:
                request.transport.close()  # hang up without an answer
            return web.Response(status=504)  # not delivered: the connection is gone
        if fault is Fault.TRUNCATED:
            status, payload = await self._forward(body)
            return web.Response(status=status, body=payload[: len(payload) // 2], content_type="application/json")
        if fault is Fault.BATCH_AS_ERROR:
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch requests not allowed"}}
            return web.json_response(error)
        if fault is Fault.RATE_LIMIT_ERROR:
            errors = [
                {
                    "jsonrpc": "2.0",
                    "id": c.get("id"),
                    "error": {"code": -32005, "message": "rate limit exceeded, retry later"},
                }
                for c in calls
            ]
            return web.json_response(errors if is_batch else errors[0])
        raise AssertionError(fault)  # pragma: no cover

    def _make_stale(self, payload: bytes, calls: list[dict[str, Any]]) -> bytes | None:
        """The upstream answer with every eth_getLogs log given another block hash; None if no log to rewrite."""
        try:
            answer = json.loads(payload)
        except ValueError:
            return None
        items = answer if isinstance(answer, list) else [answer]
        ids = {json.dumps(c.get("id")) for c in calls if c.get("method") == "eth_getLogs"}
        rewritten = 0
        for item in items:
            if not isinstance(item, dict) or json.dumps(item.get("id")) not in ids:
                continue
            for log in item.get("result") or []:
                if isinstance(log, dict) and isinstance(log.get("blockHash"), str):
                    log["blockHash"] = stale_hash(log["blockHash"])
                    self.stale_blocks.append(int(log.get("blockNumber", "0x0"), 16))
                    rewritten += 1
        return json.dumps(answer).encode() if rewritten else None


def _calls(body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC call objects of a request body (one or a batch); empty when not JSON."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [item for item in items if isinstance(item, dict)]

"""The operator's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (doing its job),
and, given a read pool, the read-only /v1 API (`indexer.api`).

`/readyz` answers 200 when the database answers within a short timeout and every
watched chain's cursor was updated (by whichever process owns the chain) within
`stall_intervals` of its poll interval; else 503 with a JSON body naming each
failing check. Bodies never carry a DSN, URL or error text from a driver: only
error types and numbers. What they read is in `indexer.store.health`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from indexer.api import Api
from indexer.metrics import Metrics
from indexer.store import health

log = structlog.get_logger(__name__)


class WatchedChain(Protocol):
    name: str
    poll_interval_seconds: float


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


class HttpServer:
    """The endpoints on one aiohttp app; `start(host, port)` binds it, `stop()` closes it."""

    def __init__(
        self,
        metrics: Metrics,
        pool: asyncpg.Pool,
        chains: Iterable[WatchedChain],
        *,
        stall_intervals: float = 5.0,
        min_stall_seconds: float = 0.0,
        db_timeout: float = 2.0,
        projected_chains: Sequence[str] | None = None,
        read_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.metrics = metrics
        self.pool = pool
        self.limits = {c.name: max(stall_intervals * c.poll_interval_seconds, min_stall_seconds) for c in chains}
        self.db_timeout = db_timeout
        self.projected_chains = projected_chains
        self.started = time.monotonic()
        self.app = web.Application()
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/healthz", self.handle_healthz)
        self.app.router.add_get("/readyz", self.handle_readyz)
        self.api = Api(read_pool) if read_pool is not None else None  # the /v1 API reads through its own pool
        if self.api is not None:
            self.api.mount(self.app)
        self._runner: web.AppRunner | None = None
        self._ready: bool | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on `host:port` (port 0: any free port); returns the port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        self.port = sock.getsockname()[1]
        self.started = time.monotonic()  # chains without a cursor get one stall limit from here
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("http_listening", host=host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        await self.metrics.refresh_from_db(self.pool, projected_chains=self.projected_chains, timeout=self.db_timeout)
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_readyz(self, request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = checks["database"] == "ok" and all(v == "ok" for v in checks["chains"].values())
        if ready != self._ready:
            (log.info if ready else log.warning)("readiness_changed", ready=ready, checks=checks)
            self._ready = ready
        return _json({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    async def readiness(self) -> dict[str, Any]:
        """Each check's verdict: "ok" or why not."""
        chains: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.db_timeout):
                ages = await health.cursor_ages(self.pool, self.limits)
        except TimeoutError:
            database = f"unreachable: no answer within {self.db_timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - whatever stops the database answering makes us not ready
            database = f"unreachable: {type(exc).__name__}"
        else:
            database = "ok"
        if database != "ok":
            return {"database": database, "chains": {name: "unknown: database unreachable" for name in self.limits}}
        waited = time.monotonic() - self.started
        for name, limit in self.limits.items():
            age = ages.get(name)
            if age is None:
                chains[name] = "ok" if waited <= limit else f"no cursor yet after {waited:.0f} s (limit {limit:g} s)"
            elif age > limit:
                chains[name] = f"no progress for {age:.0f} s (limit {limit:g} s)"
            else:
                chains[name] = "ok"
        return {"database": database, "chains": chains}

"""The read-only HTTP API of SPEC 9 under /v1: epochs, proofs, validators, stakers, and its OpenAPI document.

Mounted on the operator's HTTP server (`indexer.http.HttpServer`) when it is given a read pool
(`indexer.store.database.create_read_pool`: role `indexer_reader`, a statement timeout). Inputs are
checked first (`inputs`: 400), then read through `indexer.store.api`; an unknown epoch or staker, or
a proof of an epoch still open, is 404. Every answer under /v1 is JSON, errors `{"error": "..."}`:
a database that fails answers 503 "database unavailable" and anything unexpected 500 "internal
error", the details going to the log only, so no DSN, URL or driver text reaches a client.
Proofs come from `proofs.ProofCache`: a closed epoch's tree is built once, then served from memory.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from indexer.api import inputs, openapi
from indexer.api.errors import ApiError
from indexer.api.proofs import CACHED_EPOCHS, ProofCache
from indexer.store import api as store

log = structlog.get_logger(__name__)
PREFIX = "/v1/"
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
LOG_EVERY_SECONDS = 10.0  # a database outage is logged once per this, not once per request


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`: how the API writes every time."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_json(row: store.EpochRow) -> dict[str, Any]:
    return {
        "epoch": row.epoch,
        "start": iso(row.start),
        "end": iso(row.end),
        "status": row.status,
        "root": row.root,
        "totals": row.totals,
    }


class Api:
    """The /v1 routes, reading through `reader` (a pool of `create_read_pool`)."""

    def __init__(self, reader: asyncpg.Pool, *, cached_epochs: int = CACHED_EPOCHS) -> None:
        self.reader = reader
        self.proofs = ProofCache(reader, cached_epochs)
        self._openapi = json.dumps(openapi.document()).encode()
        self._logged_at = -LOG_EVERY_SECONDS

    def mount(self, app: web.Application) -> None:
        """Add the routes and the JSON error middleware (it touches /v1 paths only) to `app`."""
        app.middlewares.append(self.json_errors)
        app.router.add_get("/v1/epochs", self.list_epochs)
        app.router.add_get("/v1/epochs/{n}", self.get_epoch)
        app.router.add_get("/v1/epochs/{n}/proofs/{staker}", self.get_proof)
        app.router.add_get("/v1/validators", self.list_validators)
        app.router.add_get("/v1/stakers/{address}", self.get_staker)
        app.router.add_get("/v1/openapi.json", self.get_openapi)

    @web.middleware
    async def json_errors(self, request: web.Request, handler) -> web.StreamResponse:
        if not request.path.startswith(PREFIX):
            return await handler(request)
        try:
            return await handler(request)
        except ApiError as exc:
            return error(exc.status, exc.message)
        except web.HTTPException as exc:  # the router's: no such path, or a method other than GET
            if exc.status == 404:
                return error(404, f"no such endpoint: {inputs.shown(request.path)} (see /v1/openapi.json)")
            if exc.status == 405:
                response = error(405, f"method {request.method} not allowed: the API is read-only (GET)")
                response.headers["Allow"] = "GET, HEAD"
                return response
            return error(exc.status, exc.reason)
        except DATABASE_ERRORS as exc:
            self._log_database_error(request, exc)
            return error(503, "database unavailable")
        except Exception:
            log.exception("api_internal_error", path=request.path)
            return error(500, "internal error")

    def _log_database_error(self, request: web.Request, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning("api_database_unavailable", path=request.path, error=type(exc).__name__, detail=str(exc)[:300])

    async def list_epochs(self, request: web.Request) -> web.Response:
        limit, before = inputs.page(request.query)
        rows = await store.epochs(self.reader, limit, before)
        return _json({"epochs": [epoch_json(r) for r in rows]})

    async def get_epoch(self, request: web.Request) -> web.Response:
        inputs.query(request.query)
        number = inputs.epoch(request.match_info["n"])
        row = await store.epoch(self.reader, number)
        if row is None:
            raise ApiError(404, f"epoch {number} is unknown")
        return _json(epoch_json(row))

    async def get_proof(self, request: web.Request) -> web.Response:
        inputs.query(request.query)
        number = inputs.epoch(request.match_info["n"])
        staker = inputs.address(request.match_info["staker"])
        tree = await self.proofs.get(number)
        body = tree.proof(staker)
        if body is None:
            raise ApiError(404, f"staker {staker} has no leaf in epoch {number}")
        return _json(body)

    async def list_validators(self, request: web.Request) -> web.Response:
        inputs.query(request.query)
        return _json({"validators": await store.validators(self.reader)})

    async def get_staker(self, request: web.Request) -> web.Response:
        inputs.query(request.query)
        staker = inputs.address(request.match_info["address"])
        found = await store.staker(self.reader, staker)
        if not any(found.values()):
            raise ApiError(404, f"staker {staker} is unknown: no position, liquid-token balance or pending withdrawal")
        for row in found["pending_withdrawals"]:
            row["unlock_time"] = iso(row["unlock_time"])
        return _json({"staker": staker, **found})

    async def get_openapi(self, request: web.Request) -> web.Response:
        inputs.query(request.query)
        return web.Response(body=self._openapi, content_type="application/json")

"""The simulation's database: real Postgres on one connection, one transaction per schedule, crashes on cue.

The indexer's code takes an asyncpg pool; `SimDatabase` is a pool of one connection. The whole
schedule runs inside one transaction that is rolled back at its end (so schedules leave nothing
behind), and every transaction of the real code becomes a savepoint inside it, which commits or
rolls back exactly as a transaction would for everything that reads after it.

A crash is a `Crash` raised by the connection itself when the schedule's next planned crash point
comes up (the N-th statement the follow loop sends; the projector's and the harness's checks' do not
count): the statement is not run, the savepoint in hand rolls back as
the real code's `async with conn.transaction()` unwinds, and the harness throws away every object
of the "process" (sources, watcher, projector) and starts new ones on what the database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg

from indexer.store.database import empty_staging

_CALLS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table", "copy_to_table")


class Crash(BaseException):  # noqa: N818 - not an error of the code under test: the process dies
    """The simulated process dies here (a BaseException, so no `except Exception` of the real code catches it)."""


class _Connection:
    """The one real connection, counting statements and raising `Crash` at the planned ones."""

    def __init__(self, conn: asyncpg.Connection, db: SimDatabase) -> None:
        self._conn = conn
        self._db = db

    @contextlib.asynccontextmanager
    async def transaction(self, **kwargs: Any) -> AsyncIterator[None]:
        """A transaction of the code under test: a savepoint here; released, it empties the staging tables
        as the commit it stands for would."""
        savepoint = self._conn.transaction(**kwargs)
        await self._send(savepoint.start())
        self._db.depth += 1
        try:
            yield
        except BaseException:
            await self._send(savepoint.rollback())
            raise
        else:
            await self._send(savepoint.commit())
        finally:
            self._db.depth -= 1
        if self._db.depth == 0 and self._db.staged:
            await self._send(empty_staging(self._conn, self._db.staged))
            self._db.staged.clear()

    async def _send(self, statement: Any) -> Any:
        """Send a statement of the code under test (the nodes wait meanwhile), to its end even if cancelled."""
        async with self._db.in_flight():
            return await _uncancelled(statement)

    def is_in_transaction(self) -> bool:
        return self._conn.is_in_transaction()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in _CALLS:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._db.before_statement()
            if name.startswith("copy_"):
                self._db.staged.add(args[0] if args else kwargs["table_name"])  # rows there until the "commit"
            return await self._send(attr(*args, **kwargs))

        return call


async def _uncancelled(statement: Any) -> Any:
    """Await a statement; a task cancelled meanwhile lets it finish first, then takes the cancellation.

    Cancelled, asyncpg would ask the server to cancel the statement by a request of its own, which can
    land on whichever statement runs when it arrives (a later one: the schedule's transaction aborts).
    A statement finished before the process notices it is told to stop is as a real run may go too.
    """
    future = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the task goes on with
        raise


class SimDatabase:
    """A pool of one connection (see the module docstring); `crashes` are statement numbers to die at."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = _Connection(conn, self)
        self.statements = 0
        self._crash_at: list[int] = []
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task | None = None
        self._depth = 0
        self.armed = True
        self.depth = 0  # transactions of the code under test open now
        self.staged: set[str] = set()  # staging tables a COPY filled in the open transaction
        self._busy = 0  # statements sent and not yet answered
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def quiet(self) -> None:
        """Return once no statement is in flight: the simulated nodes answer only then, so that the order in
        which the process's tasks run depends on the seed alone, not on how fast Postgres answers."""
        while self._busy:
            await self._idle.wait()

    def plan_crashes(self, at: Iterable[int]) -> None:
        self._crash_at = sorted(at)

    def before_statement(self) -> None:
        if not self.armed:  # the harness's checks and the projector's steps: how many statements a step sends
            return  # depends on Postgres's timing (its read-ahead), so they do not count towards a crash point
        self.statements += 1
        if self._crash_at and self.statements >= self._crash_at[0]:
            self._crash_at.pop(0)
            raise Crash(f"crash at statement {self.statements}")

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Connection]:
        """The connection, for one task at a time (the same task may nest)."""
        task = asyncio.current_task()
        if self._holder is task:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._holder, self._depth = task, 1
            try:
                yield self.conn
            finally:
                self._holder, self._depth = None, 0

    def __getattr__(self, name: str) -> Any:
        if name not in _CALLS:
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self.acquire() as conn:
                return await getattr(conn, name)(*args, **kwargs)

        return call

    async def close(self) -> None:
        """Nothing to close: the harness owns the connection."""

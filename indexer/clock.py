"""Time for the imperative shell: one clock every loop asks, so a simulation can swap it.

The pure core never asks the time (it reads block timestamps). The shell's waits and timers go
through the current `Clock`: the follow loop's polls and back-off, the RPC client's retry waits and
URL cool-downs, the projector's and the schedules' rounds. In production it is the wall clock; the
deterministic simulation (`indexer.simulation`) installs a virtual one with `using(clock)`, so a
schedule of hours runs in milliseconds and the same seed gives the same run. The clock is held in a
context variable: tasks started under `using` inherit it, other code is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Unix seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait `seconds`, or less if `stop` is set meanwhile."""
        ...


class WallClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


WALL = WallClock()
_current: ContextVar[Clock] = ContextVar("indexer_clock", default=WALL)


def current() -> Clock:
    """The clock in force here."""
    return _current.get()


@contextlib.contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Make `clock` the clock of this context (and of the tasks started in it)."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds` on the current clock, or less if `stop` is set meanwhile."""
    await _current.get().wait(stop, seconds)

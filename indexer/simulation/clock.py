"""The simulation's clock: virtual time that moves only when the code under test waits.

Installed with `indexer.clock.using(...)`, it is the clock of the follow loop, the RPC client and
the projector. `sleep` (an RPC retry's back-off) only moves time; `wait` (the follow loop's pause
between polls) is a *tick*: the harness checks the invariants on what the indexer has written, then
lets the world move on (new blocks, a reorg, ...), then time advances. Everything the world does
happens at ticks, so a run depends on the seed alone, not on how fast Postgres answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SimClock:
    """Virtual unix time starting at `start`; `on_tick(seconds)` runs at each wait of the follow loop."""

    def __init__(self, start: float, on_tick: Callable[[float], Awaitable[None]]) -> None:
        self.now = float(start)
        self.elapsed = 0.0
        self.on_tick = on_tick

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        if stop.is_set():
            return
        await self.on_tick(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

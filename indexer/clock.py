"""Time for the imperative shell: the one way a loop waits, so a simulation can swap the clock.

The pure core never asks the time (it reads block timestamps). Loops that poll or back off
(the follow loop, the projector, the ownership retry) wait through `sleep_unless`, which
returns early when the service is asked to stop.
"""

from __future__ import annotations

import asyncio


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass

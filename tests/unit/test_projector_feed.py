"""Merging the chains' event streams for the fold: canonical order whatever the read size, reads kept ahead."""

from __future__ import annotations

import asyncio
import gc
from contextlib import aclosing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.events import Event, EventType
from indexer.projection import Checkpoint, checkpoint
from indexer.projector.feed import read_ahead, read_merged, ready_prefix


def event(chain: str, block: int, time: int, log: int = 0) -> Event:
    return Event(chain, 1, "0xc", "native", 1, block, f"0xb{block}", time, f"0x{chain}{block}", log,
                 EventType.STAKE, "ETH", "0xa", None, "0xp", None, 1)  # fmt: skip


@st.composite
def chains(draw) -> dict[str, list[Event]]:
    """Per chain, its events in chain order: block times never go back within a chain; several logs a block."""
    streams = {}
    for name in draw(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), unique=True, min_size=1)):
        time, events = 0, []
        for block in range(draw(st.integers(0, 12))):
            time += draw(st.integers(0, 3))  # equal times across chains are the interesting case
            events.extend(event(name, block, time, log) for log in range(draw(st.integers(1, 3))))
        streams[name] = events
    return streams


def reader(streams: dict[str, list[Event]], reads: list[tuple[str, int]]):
    async def read(chain: str, after: Checkpoint | None, limit: int) -> list[Event]:
        reads.append((chain, limit))
        rest = [e for e in streams[chain] if after is None or checkpoint(e) > after]
        return rest[:limit]

    return read


async def collect(batches) -> list[list[Event]]:
    return [batch async for batch in batches]


@settings(max_examples=200, deadline=None)
@given(streams=chains(), limit=st.integers(1, 5), ahead=st.booleans())
def test_any_read_size_gives_every_event_once_in_checkpoint_order(streams, limit, ahead):
    reads: list[tuple[str, int]] = []
    merged = read_merged(reader(streams, reads), dict.fromkeys(streams), limit)
    batches = asyncio.run(collect(read_ahead(merged) if ahead else merged))
    assert all(batches)
    assert [e for batch in batches for e in batch] == sorted(
        (e for events in streams.values() for e in events), key=checkpoint
    )
    assert all(size == limit for _, size in reads)
    for chain, events in streams.items():  # each chain read to its end, and no further than one empty read
        assert len([c for c, _ in reads if c == chain]) <= len(events) // limit + 1


def test_reading_resumes_after_the_given_place():
    streams = {"alpha": [event("alpha", b, b) for b in range(6)]}
    batches = asyncio.run(collect(read_merged(reader(streams, []), {"alpha": checkpoint(streams["alpha"][3])}, 2)))
    assert [e.block_number for batch in batches for e in batch] == [4, 5]


def test_events_past_the_last_read_event_of_an_open_chain_wait():
    alpha = [event("alpha", 1, 10), event("alpha", 2, 30)]
    beta = [event("beta", 1, 20)]
    ready, rest = ready_prefix({"alpha": alpha, "beta": beta}, open_chains={"beta"})
    assert ready == [alpha[0], beta[0]]  # beta may still have events at 20..30 to come before alpha's second
    assert rest == {"alpha": [alpha[1]], "beta": []}
    ready, rest = ready_prefix({"alpha": alpha, "beta": beta}, open_chains=set())
    assert ready == [alpha[0], beta[0], alpha[1]]


def test_an_open_chain_with_nothing_read_cannot_be_merged():
    with pytest.raises(ValueError, match="open chain has nothing buffered"):
        ready_prefix({"alpha": [event("alpha", 1, 10)], "beta": []}, open_chains={"beta"})


def test_leaving_early_closes_the_source_and_drops_the_read_in_flight():
    closed: list[bool] = []

    async def source():
        try:
            for n in range(10):
                await asyncio.sleep(0)
                yield [n]
        finally:
            closed.append(True)

    async def first_two():
        taken = []
        async with aclosing(read_ahead(source())) as batches:
            async for batch in batches:
                taken.append(batch)
                if len(taken) == 2:
                    break
        return taken, list(closed)

    assert asyncio.run(first_two()) == ([[0], [1]], [True])


@pytest.mark.parametrize("ending", [StopAsyncIteration, ConnectionResetError])
def test_leaving_after_the_read_ahead_ended_leaves_no_unretrieved_exception(ending):
    """The caller stops (an error of its own, a crash) while the read in flight has ended, with the source's end
    or an error: that read's outcome is dropped quietly, not logged at garbage collection as never retrieved."""
    reported: list[dict] = []

    async def source():
        yield [0]
        if ending is ConnectionResetError:
            raise ConnectionResetError("the read after the caller left")

    async def leave_after_the_first():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        batches = read_ahead(source())
        assert await anext(batches) == [0]
        await asyncio.sleep(0.01)  # meanwhile the next read ends
        await batches.aclose()
        gc.collect()

    asyncio.run(leave_after_the_first())
    assert reported == []


def test_an_error_of_the_read_cancelled_as_the_caller_leaves_does_not_replace_the_callers_own():
    """The caller leaves with an error of its own while the next read is in flight; that read, cancelled, fails in
    its own cleanup: the caller's error is the one that comes out of the loop."""
    reported: list[dict] = []

    async def source():
        yield [0]
        try:
            await asyncio.sleep(10)  # the next read, in flight
        except asyncio.CancelledError:
            raise ConnectionResetError("the read's cleanup failed too") from None
        yield [1]

    async def fail_on_the_first():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        async with aclosing(read_ahead(source())) as batches:
            async for _ in batches:
                await asyncio.sleep(0.01)  # the next read is under way
                raise ValueError("the fold failed")

    with pytest.raises(ValueError, match="the fold failed"):
        asyncio.run(fail_on_the_first())
    gc.collect()
    assert reported == []

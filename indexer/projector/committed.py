"""Events this process's watchers committed, kept for its projector so that it need not read them back.

In one process (`run`, `run --once`) a chain's watcher hands each batch here once its transaction
has committed, and the projector's reads are answered from memory whenever memory holds every
stored event such a read would return; any other read goes to the event log. What is kept is what
the log holds, event for event:
- a batch is kept only after its transaction committed, and only when every one of its events was
  stored new (none skipped as stored before) and none waits for its pool's name (the log fills
  names in later, in place);
- a chain's kept events are one unbroken run of batches, each starting where the one before ended;
  a batch that does not follow starts the run anew, and a rewind (reorg, contracts adopted) forgets it;
- a watcher hands over nothing at or below the newest block with stored events when it started
  (`Watcher.fresh_above`): there the log may hold events this run does not fetch again.
A read is answered when its range is covered: it starts at or after the run's floor (what was let
go: its first block, or the last event the projector read past) and ends at or below its last
block. The projector folds a kept chain only up to the run's last block (`reach`): between a
batch's commit and its hand-over the log is one batch ahead, and a fold that stopped short of it
on one chain while folding later events of another would break the canonical order.
Memory is bounded: events the projector has read past are let go, and the oldest beyond `limit`
events (a projector that lags, or runs in another process).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import attrgetter

from indexer.batch import Batch
from indexer.events import Event
from indexer.projection import Checkpoint

Key = tuple[int, int, str]  # (block number, log index, tx hash): the event log's order within a chain
LIMIT = 50_000  # events kept in all chains' runs (about 30 MB)


order_key: Callable[[Event], Key] = attrgetter("block_number", "log_index", "tx_hash")


class _Run:
    """One chain's kept events in log order: every stored event after `floor` up to block `last`."""

    __slots__ = ("events", "floor", "last", "last_time")

    def __init__(self, floor: Key) -> None:
        self.events: list[Event] = []
        self.floor = floor
        self.last, self.last_time = floor[0] - 1, -1

    def drop_through(self, index: int) -> None:
        """Let go of the first `index` events: the floor moves to the last of them."""
        if index > 0:
            self.floor = order_key(self.events[index - 1])
            del self.events[:index]


class CommittedEvents:
    """The events recently committed per chain, answering the projector's reads that they cover."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._runs: dict[str, _Run] = {}

    def committed(self, batch: Batch, stored: int, *, first: bool = False) -> None:
        """A batch's transaction committed, storing `stored` of its events new: keep them if they are the log's.

        `first`: the log holds no event of the chain before this batch (a reader from the chain's start is
        answered too)."""
        if stored != len(batch.events) or not all(e.pool_resolved for e in batch.events):
            self.forget(batch.chain)
            return
        run = self._runs.get(batch.chain)
        if run is None or run.last != batch.first_block - 1:
            run = self._runs[batch.chain] = _Run((-1, -1, "") if first else (batch.first_block, -1, ""))
        run.events.extend(sorted(batch.events, key=order_key))
        run.last, run.last_time = batch.last.number, batch.last.time
        self._bound()

    def reach(self, chain: str) -> tuple[int, int] | None:
        """The (block, block time) up to which `chain`'s kept events are every stored one, if any are kept."""
        run = self._runs.get(chain)
        return None if run is None else (run.last, run.last_time)

    def forget(self, chain: str) -> None:
        """Keep nothing of `chain` (its log is being rewound or written around this process)."""
        self._runs.pop(chain, None)

    def read(
        self, chain: str, after: Checkpoint | None, up_to_block: int, up_to_time: int, limit: int
    ) -> list[Event] | None:
        """What `store.projections.read_events` would return, if the kept events cover it; else None.

        Events up to `after` are let go: the projector reads on from there.
        """
        run = self._runs.get(chain)
        start: Key = (after[2], after[3], after[4]) if after is not None else (-1, -1, "")
        if run is None or start < run.floor or up_to_block > run.last:
            return None
        first = bisect_right(run.events, start, key=order_key)
        run.drop_through(first)
        return _taken(run.events, up_to_block, up_to_time, limit)

    def __len__(self) -> int:
        return sum(len(run.events) for run in self._runs.values())

    def _bound(self) -> None:
        excess = len(self) - self.limit
        for run in self._runs.values():
            if excess <= 0:
                return
            dropped = min(excess, len(run.events))
            run.drop_through(dropped)
            excess -= dropped


def _taken(events: Sequence[Event], up_to_block: int, up_to_time: int, limit: int) -> list[Event]:
    """The first `limit` events at or below the block and the time, in log order (as the store's query)."""
    taken: list[Event] = []
    for event in events:
        if len(taken) == limit or event.block_number > up_to_block:
            break
        if event.block_time <= up_to_time:
            taken.append(event)
    return taken

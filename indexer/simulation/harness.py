"""One schedule: the real indexer against a simulated world, from one seed, checked by an oracle.

A seed decides everything: the chain's activity, its reorgs (now and then one deeper than the
indexer keeps hashes for: the loud, harmless failure), the nodes' faults, the confirmations and
range sizes, and the statements at which the process crashes. The code under test is the real one:
the follow loop (`Watcher.run`) with the real EVM source and RPC client (its nodes simulated), the
real store on real Postgres (one transaction per schedule, rolled back), the real projector.

Checked at every tick (each pause of the follow loop): the cursor is a block the world made; the
positions sum to their validator's amount; nothing above the confirmed height is folded. At the
end, after a last catch-up with the faults gone: the cursor is on the canonical chain, the event
log is exactly the canonical chain's logs up to it (every field, against what the world recorded
when it made them, not through the decoder), and the projections equal a clean fold of that log
up to the confirmed block.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import clock
from indexer.chains.evm import EvmSource
from indexer.chains.rpc import RpcClient
from indexer.config import parse_config
from indexer.errors import ReorgTooDeep
from indexer.events import Event
from indexer.projection import EMPTY, ProjectionState, checkpoint
from indexer.projector.committed import CommittedEvents
from indexer.projector.fold import fold
from indexer.projector.runner import Projector
from indexer.simulation.clock import SimClock
from indexer.simulation.database import Crash, SimDatabase
from indexer.simulation.node import Faults, SimProvider
from indexer.simulation.plants import PLANTS
from indexer.simulation.world import World
from indexer.store.cursors import load_cursor, load_pool_names
from indexer.store.projections import load_state, read_events
from indexer.store.projector import chain_frontier
from indexer.watcher import Watcher

CHAIN = "sim"
FAR = 2**40  # a block time no schedule reaches


@dataclass(frozen=True)
class Plan:
    """What a seed decides about a schedule (besides the world's own randomness)."""

    confirmations: int
    keep_blocks: int
    ticks: int
    max_block_range: int
    target_logs: int
    premined: int
    blocks_per_tick: tuple[int, int]
    reorg_rate: float
    deep_reorg_rate: float
    project_every: int
    faults: Faults
    crashes: tuple[int, ...]

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        faulty = rng.random() < 0.7
        rate = lambda top: round(rng.uniform(0, top), 3) if faulty and rng.random() < 0.5 else 0.0  # noqa: E731
        faults = Faults(
            rate_limit=rate(0.1), server_error=rate(0.1), timeout=rate(0.1), truncated=rate(0.05),
            range_limit=rate(0.3), lagging_head=rate(0.3), stale_branch=rate(0.2), logs_disagree=rate(0.2),
        )  # fmt: skip
        crashes = tuple(sorted(rng.sample(range(3, 400), rng.choice([0, 0, 1, 2, 3]))))
        return cls(
            confirmations=rng.choice([0, 1, 2, 3]),
            keep_blocks=rng.choice([6, 8, 12, 16]),
            ticks=rng.randint(6, 16),
            max_block_range=rng.choice([1, 2, 3, 5, 8, 20]),
            target_logs=rng.choice([3, 10, 40, 1000]),
            premined=rng.randint(0, 12),
            blocks_per_tick=(0, rng.choice([1, 2, 3])),
            reorg_rate=rng.choice([0.0, 0.1, 0.25]),
            deep_reorg_rate=rng.choice([0.0, 0.0, 0.0, 0.02]),
            project_every=rng.choice([2, 3, 4, 6]),
            faults=faults,
            crashes=crashes,
        )


@dataclass
class Outcome:
    seed: int
    plant: str | None
    divergence: str | None = None  # what was wrong; None: the run matched the oracle
    loud_stop: bool = False  # stopped by a reorg deeper than the kept window, as it must
    trace: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.divergence is not None


class Divergence(Exception):
    """The indexer's state differs from what the oracle says it must be."""


def _config(world: World, plan: Plan) -> Any:
    return parse_config({
        "epochs": {"genesis": "2026-01-01T00:00:00Z"},
        "chains": [{
            "name": CHAIN, "kind": "evm", "chain_id": 31337, "rpc": ["http://node-a.sim", "http://node-b.sim"],
            "confirmations": plan.confirmations, "poll_interval_seconds": 12,
            "max_block_range": plan.max_block_range, "initial_block_range": plan.max_block_range,
            "target_logs_per_request": plan.target_logs, "request_timeout_seconds": 5,
            "contracts": world.contracts(),
        }],
    })  # fmt: skip


class Schedule:
    """The run of one seed; `await Schedule(seed, conn).run()` returns its Outcome."""

    def __init__(self, seed: int, conn: Any, plant: str | None = None) -> None:
        self.seed, self.plant = seed, plant
        self.rng = random.Random(seed)
        self.plan = Plan.draw(self.rng)
        self.world = World(random.Random(self.rng.getrandbits(64)))
        self.config = _config(self.world, self.plan)
        self.chain = self.config.chains[0]
        self.db = SimDatabase(conn)
        self.db.plan_crashes(self.plan.crashes)
        self.outcome = Outcome(seed, plant)
        self.tick = 0
        self.restarts = 0
        self.deep_reorg = False
        self.final = False
        self.stop = asyncio.Event()
        self.nodes = [_Node(self.db), _Node(self.db)]  # what the RPC client holds; their provider is new at every tick
        self.projector: Projector | None = None
        self.committed = CommittedEvents()

    def note(self, line: str) -> None:
        self.outcome.trace.append(f"t{self.tick:03d} {line}")

    # -- the world and its nodes -------------------------------------------------------------------------------

    def _reseed_nodes(self, faults: Faults | None = None) -> None:
        """Fresh nodes for this tick (and restart): their faults depend on (seed, tick, restart) only."""
        faults = self.plan.faults if faults is None else faults
        for node, name in zip(self.nodes, ("node-a", "node-b"), strict=True):
            rng = random.Random(f"{self.seed}/{name}/{self.tick}/{self.restarts}")
            node.provider = SimProvider(self.world, rng, faults, name)

    def _move_world(self) -> None:
        low, high = self.plan.blocks_per_tick
        mined = self.rng.randint(low, high)
        for _ in range(mined):
            self.world.mine(self.rng.randint(0, 6))
        made = f"mined {mined}"
        if self.rng.random() < self.plan.reorg_rate and len(self.world.canonical) > 2:
            depth = self.rng.randint(1, min(self.plan.keep_blocks - 1, len(self.world.canonical) - 1))
            self.world.reorg(depth)
            made += f", reorg {depth}"
        elif self.rng.random() < self.plan.deep_reorg_rate and len(self.world.canonical) > self.plan.keep_blocks + 2:
            depth = self.rng.randint(self.plan.keep_blocks + 1, len(self.world.canonical) - 1)
            self.world.reorg(depth)
            self.deep_reorg = True
            made += f", deep reorg {depth}"
        self.note(f"{made}, head {self.world.canonical[-1].number}")

    # -- the process under test ----------------------------------------------------------------------------------

    def _watcher(self, known: dict[str, str]) -> Watcher:
        rpc = RpcClient(CHAIN, self.chain.rpc, timeout=5, providers=self.nodes, max_backoff=5.0)
        return Watcher(EvmSource(self.chain, rpc, known), self.chain, self.db, keep_blocks=self.plan.keep_blocks,
                       committed=self.committed)  # fmt: skip

    async def _on_tick(self, seconds: float) -> None:
        """A pause of the follow loop: check, maybe project, move the world, new nodes for the next tick."""
        await self._check_cursor()
        if self.final:  # the last catch-up: the world stands still, the loop retries until it is done
            return
        if self.tick % self.plan.project_every == 0:
            await self._project()
            await self._check_projections()
        self.tick += 1
        if self.tick >= self.plan.ticks:
            self.stop.set()
            return
        self._move_world()
        self._reseed_nodes()

    async def _project(self) -> None:
        if self.projector is None:
            self.projector = Projector(self.db, self.config, committed=self.committed)
        # The projector reads ahead and writes in tasks of its own, so the order of its statements depends on
        # Postgres's timing: a crash planned inside a step would land on a different statement from run to run.
        # Crashes stay out of it (its crash safety is the kill tests'); one planned there comes right after.
        self.db.armed = False
        try:
            folded = await self.projector.step()
        finally:
            self.db.armed = True
        self.note(f"projected {folded}")

    async def _follow(self, *, once: bool) -> None:
        """Run the follow loop (a fresh process after every crash) until stop, or once."""
        while True:
            self.projector = None  # nothing of the process's memory survives a crash
            self.committed = CommittedEvents()  # what the process's watcher hands its projector
            watcher = None
            try:
                watcher = self._watcher(await load_pool_names(self.db))  # a process's start: names learnt so far
                await watcher.run(self.stop, once=once)
                return
            except BaseException as exc:  # noqa: BLE001 - sorted out below
                crash = _find(exc, Crash)
                if crash is None:
                    raise
                self.restarts += 1
                self.note(f"crash ({crash}); restart {self.restarts}")
                self._reseed_nodes(None if not once else Faults())
            finally:
                if watcher is not None:
                    await watcher.source.close()

    # -- the oracle -------------------------------------------------------------------------------------------------

    async def _check_cursor(self) -> None:
        """After a step of the follow loop: its cursor is a block the world made (a stale node's may be orphaned)."""
        self.db.armed = False  # the checks are the harness's, not the process's: no crash in them
        try:
            cursor = await load_cursor(self.db, CHAIN)
            if cursor is not None:
                block = self.world.block_by_hash.get(cursor.hash)
                if block is None or block.number != cursor.number:
                    raise Divergence(f"cursor {cursor.number} {cursor.hash} is no block the world made")
        finally:
            self.db.armed = True

    async def _check_projections(self) -> None:
        """After a step of the projector: positions sum to their validator's amount, nothing above confirmed."""
        self.db.armed = False
        try:
            assert self.projector is not None and self.projector.state is not None
            state = self.projector.state  # what it just wrote (the final check reads the tables themselves)
            _check_positions(state)
            applied = state.checkpoints.get(CHAIN)
            if applied is not None:
                confirmed = (await chain_frontier(self.db, [CHAIN])).get(CHAIN, (None, None))[0]
                if confirmed is None or applied[2] > confirmed:
                    raise Divergence(f"event of block {applied[2]} folded above the confirmed block {confirmed}")
        finally:
            self.db.armed = True

    async def _final_check(self) -> None:
        self.db.armed = False
        cursor = await load_cursor(self.db, CHAIN)
        if cursor is None:
            if len(self.world.canonical) > self.plan.confirmations + 1:
                raise Divergence("the chain was never indexed")
            return
        canonical = self.world.canonical[cursor.number] if cursor.number < len(self.world.canonical) else None
        if canonical is None or canonical.hash != cursor.hash:
            raise Divergence(f"cursor {cursor.number} {cursor.hash} is not on the canonical chain")
        stored = await read_events(self.db, CHAIN, None, cursor.number, FAR, 10**7)
        expected = self.world.expected_events(cursor.number)
        got = {(CHAIN, e.tx_hash, e.log_index): _row(e) for e in stored}
        if got != expected:
            missing = sorted(set(expected) - set(got))[:3]
            extra = sorted(set(got) - set(expected))[:3]
            wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:3]
            detail = "; ".join(f"{k}: stored {got[k]} expected {expected[k]}" for k in wrong)
            raise Divergence(f"event log differs: missing {missing} extra {extra} wrong {detail}")
        state = await load_state(self.db)
        confirmed = (await chain_frontier(self.db, [CHAIN])).get(CHAIN, (None, None))[0]
        folded = [e for e in stored if confirmed is not None and e.block_number <= confirmed]
        clean, _ = fold(EMPTY, folded, changes=False)
        if folded and state.checkpoints.get(CHAIN) != checkpoint(max(folded, key=checkpoint)):
            raise Divergence(f"projections folded to {state.checkpoints.get(CHAIN)}, the confirmed log ends later")
        for part in ("validators", "pools", "positions", "balances", "token_owners", "token_pools", "withdrawals"):
            ours, theirs = _plain(getattr(state, part)), _plain(getattr(clean, part))
            if ours != theirs:
                raise Divergence(f"projection {part} differs from a clean fold of the event log")

    # -- the run ------------------------------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        # The retries' jitter (tenacity's) draws from the global `random`: seeded here, as everything else of
        # the schedule is, so that what ran before in the process changes nothing.
        outside = random.getstate()
        random.seed(f"{self.seed}/jitter")
        try:
            return await self._run()
        finally:
            random.setstate(outside)

    async def _run(self) -> Outcome:
        plant = PLANTS[self.plant]() if self.plant else _nothing()
        for _ in range(self.plan.premined):
            self.world.mine(self.rng.randint(0, 6))
        self.note(f"plan {self.plan}")
        self._reseed_nodes()
        sim = SimClock(self.world.canonical[-1].timestamp, self._on_tick)
        try:
            with plant, clock.using(sim):
                await self._follow(once=False)
                self.note("faults off: last catch-up")
                self.stop, self.final = asyncio.Event(), True
                self.db.plan_crashes(())
                self._reseed_nodes(Faults())
                await self._follow(once=True)
                await self._project()
                await self._final_check()
                _check_no_task_left()
                self.note("matches the oracle")
        except ReorgTooDeep as exc:
            if not self.deep_reorg:
                self.outcome.divergence = f"reorg too deep without one deeper than the window: {exc}"
            else:
                self.outcome.loud_stop = True
                self.note("stopped loudly: reorg deeper than the kept window")
        except Divergence as exc:
            self.outcome.divergence = str(exc)
        except Exception as exc:  # noqa: BLE001 - any other failure of the code under test
            where = traceback.extract_tb(exc.__traceback__)[-3:]
            frames = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(where))
            self.outcome.divergence = f"unexpected failure: {type(exc).__name__}: {exc} (at {frames})"
        if self.outcome.divergence:
            self.note(f"DIVERGENCE: {self.outcome.divergence}")
        return self.outcome


def _check_positions(state: ProjectionState) -> None:
    for (validator, asset), stakers in state.positions.items():
        if sum(stakers.values()) != state.validators.get((validator, asset), 0):
            raise Divergence(f"positions of {validator}/{asset} do not sum to its amount")


def _check_no_task_left() -> None:
    """Every task the process started has ended (one left would run on into the next schedule)."""
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    if left:
        raise Divergence(f"tasks left running: {', '.join(sorted(t.get_coro().__qualname__ for t in left))}")


def _row(e: Event) -> tuple:
    return (e.block_number, e.block_hash, e.block_time, e.contract, str(e.event_type), e.staker, e.counterparty,
            e.pool, e.amount, e.token_id, e.unlock_time, e.asset)  # fmt: skip


def _plain(mapping: Any) -> dict:
    return {k: (dict(v) if hasattr(v, "items") else v) for k, v in mapping.items()}


def _find(exc: BaseException, kind: type) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


class _Node:
    """One node URL as the RPC client sees it: the tick's simulated provider behind a stable object.

    It answers only while no statement is in flight (`SimDatabase.quiet`): the fetcher then runs ahead
    of the writer by as much in every run of a seed, whatever Postgres's speed.
    """

    provider: Any = None

    def __init__(self, db: SimDatabase) -> None:
        self.db = db

    async def make_request(self, method: str, params: Any) -> Any:
        await self.db.quiet()
        return await self.provider.make_request(method, params)

    async def make_batch_request(self, calls: Any) -> Any:
        await self.db.quiet()
        return await self.provider.make_batch_request(calls)

    async def disconnect(self) -> None:
        return None


class _nothing:  # noqa: N801 - a null context manager, named for reading
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

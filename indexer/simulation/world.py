"""A simulated EVM chain carrying the six multistaking contracts, with reorgs (pure, deterministic).

Every block keeps its logs in the exact shape `eth_getLogs` answers, the rows
the indexer must store for them, and the contract state after it. Every block
ever made stays retrievable by hash, so a node can still serve a branch the
chain has left (see `node.py`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, NamedTuple

from indexer.simulation.world_calls import Mix, calldata, random_call, recipient, trace, value
from indexer.simulation.world_state import (
    BATCHER,
    BY_ADDRESS,
    CONTRACTS,
    NFT,
    TOKEN,
    Call,
    Emitted,
    WorldState,
    apply,
)

Key = tuple[str, str, int]  # (chain, tx_hash, log_index): the event log's natural key


class ExpectedRow(NamedTuple):
    """The `events` row a log must become (times as unix seconds, EVM addresses lower-case)."""

    block_number: int
    block_hash: str
    block_time: int
    contract: str
    event_type: str
    staker: str | None
    counterparty: str | None
    pool: str | None  # validator id: lower-case address, or a string pool's name (never its hash)
    amount: int | None
    token_id: int | None
    unlock_time: int | None
    asset: str


@dataclass(frozen=True, slots=True)
class Tx:
    hash: str
    index: int
    call: Call


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    txs: tuple[Tx, ...]
    logs: tuple[dict[str, Any], ...]  # every log of the block, any address, in `eth_getLogs` shape
    expected: dict[Key, ExpectedRow]
    state: WorldState  # the contracts' state after this block

    def header(self) -> dict[str, Any]:
        """`eth_getBlockByNumber(n, false)`."""
        return {
            "number": hex(self.number),
            "hash": self.hash,
            "parentHash": self.parent_hash,
            "timestamp": hex(self.timestamp),
            "transactions": [tx.hash for tx in self.txs],
        }


class World:
    """The chain: `canonical` blocks from genesis (block 0) to the head, every block ever made by hash."""

    def __init__(
        self,
        rng: random.Random,
        *,
        genesis_time: int = 1_767_225_600,
        block_seconds: int = 12,
        chain: str = "sim",
        chain_id: int = 31337,
        log_timestamps: bool = True,
        jitter_seconds: int = 2,
        gap_rate: float = 0.1,
        gap_seconds: int = 2 * 86400,
        reinclude_rate: float = 0.5,
        mix: Mix | None = None,
    ) -> None:
        self.rng = rng
        self.chain, self.chain_id = chain, chain_id
        self.block_seconds, self.jitter_seconds = block_seconds, jitter_seconds
        self.gap_rate, self.gap_seconds = gap_rate, gap_seconds  # idle stretches, so 3-day locks do expire
        self.reinclude_rate = reinclude_rate  # a reorg's new block re-includes the old one's transactions
        self.log_timestamps = log_timestamps
        self.mix = mix or Mix()
        self._serial = 0
        self.canonical: list[Block] = []
        self.block_by_hash: dict[str, Block] = {}
        self.tx_blocks: dict[str, list[str]] = {}  # tx hash -> hashes of the blocks (any branch) holding it
        self.orphans: list[str] = []  # tip hashes of the branches reorgs left
        self.heights: dict[int, list[str]] = {}  # block number -> hashes of every block made at that height
        self._seal(None, genesis_time, WorldState.genesis(), [])

    @staticmethod
    def contracts() -> list[dict[str, Any]]:
        """The six staking contracts as chains.yaml `contracts` entries."""
        return [
            {
                "name": c.name,
                "kind": c.kind,
                "version": c.version,
                "address": c.address,
                "start_block": 0,
                "asset": c.asset,
                "decimals": c.decimals,
                "weight": 1,
            }
            for c in CONTRACTS
        ]

    @staticmethod
    def code_addresses() -> list[str]:
        """Addresses holding contract code (`eth_getCode` is not "0x")."""
        return [c.address for c in CONTRACTS] + [TOKEN, NFT, BATCHER]

    @property
    def head(self) -> Block:
        return self.canonical[-1]

    @property
    def state(self) -> WorldState:
        return self.head.state

    def state_at(self, block_number: int) -> WorldState:
        """The contracts' state after canonical block `block_number` (do not mutate it)."""
        return self.canonical[block_number].state

    def mine(self, n_txs: int, *, seconds: int | None = None) -> Block:
        """Append one block of `n_txs` random valid transactions, `seconds` after its parent (default: drawn)."""
        parent = self.head
        state, time = parent.state.copy(), self._next_time(parent.timestamp, seconds)
        txs = []
        for _ in range(n_txs):
            call = random_call(self.rng, state, time, self.mix)
            emitted = apply(state, call, time)
            if emitted is None:  # pragma: no cover - random_call proposes valid calls only
                raise AssertionError(f"random_call proposed a call that reverts: {call}")
            txs.append((self._new_tx_hash(), call, emitted))
        return self._seal(parent, time, state, txs)

    def reorg(self, depth: int, *, length: int | None = None, n_txs: int = 3) -> list[Block]:
        """Replace the last `depth` blocks by a new branch of `length >= depth` blocks (default depth or depth + 1).

        The state is rolled back to the fork point; a new block re-includes the transactions of the
        block it replaces (those still valid, same hashes) at `reinclude_rate`, else draws `n_txs` new ones.
        """
        if not 1 <= depth < len(self.canonical):
            raise ValueError(f"reorg depth {depth} outside 1..{len(self.canonical) - 1}")
        length = depth + self.rng.randint(0, 1) if length is None else length
        if length < depth:
            raise ValueError("a reorg's new branch is at least as long as the one it replaces")
        old = self.canonical[-depth:]
        del self.canonical[-depth:]
        self.orphans.append(old[-1].hash)
        made = []
        for i in range(length):
            if i < depth and self.rng.random() < self.reinclude_rate:
                parent = self.head
                state, time = parent.state.copy(), self._next_time(parent.timestamp, None)
                txs = []
                for tx in old[i].txs:
                    emitted = apply(state, tx.call, time)
                    if emitted is not None:
                        txs.append((tx.hash, tx.call, emitted))
                made.append(self._seal(parent, time, state, txs))
            else:
                made.append(self.mine(n_txs))
        return made

    def branch(self, tip_hash: str) -> list[Block]:
        """The chain from genesis to the block `tip_hash` (canonical or orphaned), by number."""
        blocks = []
        block: Block | None = self.block_by_hash[tip_hash]
        while block is not None:
            blocks.append(block)
            block = self.block_by_hash.get(block.parent_hash)
        blocks.reverse()
        return blocks

    def expected_events(self, up_to_block: int | None = None) -> dict[Key, ExpectedRow]:
        """The rows of every canonical log through `up_to_block` (default: the head)."""
        last = len(self.canonical) - 1 if up_to_block is None else min(up_to_block, len(self.canonical) - 1)
        rows: dict[Key, ExpectedRow] = {}
        for block in self.canonical[: last + 1]:
            rows.update(block.expected)
        return rows

    def transaction(self, tx_hash: str, block: Block) -> dict[str, Any]:
        """`eth_getTransactionByHash` for the transaction as included in `block`."""
        tx = next(t for t in block.txs if t.hash == tx_hash)
        return {
            "hash": tx.hash,
            "from": tx.call.sender,
            "to": recipient(tx.call),
            "input": calldata(tx.call),
            "value": hex(value(tx.call)),
            "nonce": hex(tx.index),
            "gas": "0x1c9c380",
            "type": "0x2",
            "blockHash": block.hash,
            "blockNumber": hex(block.number),
            "transactionIndex": hex(tx.index),
        }

    @staticmethod
    def trace(tx: Tx) -> dict[str, Any]:
        """`debug_traceTransaction(hash, {"tracer": "callTracer"})`."""
        return trace(tx.call)

    def _next_time(self, parent_time: int, seconds: int | None) -> int:
        if seconds is not None:
            return parent_time + max(1, seconds)
        time = parent_time + self.block_seconds + self.rng.randint(0, self.jitter_seconds)
        if self.rng.random() < self.gap_rate:
            time += self.rng.randint(1, self.gap_seconds)
        return time

    def _new_tx_hash(self) -> str:
        self._serial += 1
        return _hash(b"tx" + self.chain_id.to_bytes(8, "big") + self._serial.to_bytes(8, "big"))

    def _seal(
        self, parent: Block | None, time: int, state: WorldState, txs: list[tuple[str, Call, list[Emitted]]]
    ) -> Block:
        """Make the block holding `txs` on top of `parent`, and make it the head."""
        self._serial += 1
        number = 0 if parent is None else parent.number + 1
        parent_hash = "0x" + "00" * 32 if parent is None else parent.hash
        block_hash = _hash(bytes.fromhex(parent_hash[2:]) + self._serial.to_bytes(8, "big"))
        logs: list[dict[str, Any]] = []
        expected: dict[Key, ExpectedRow] = {}
        number_hex, time_hex = hex(number), hex(time)
        for index, (tx_hash, _, emitted) in enumerate(txs):
            for item in emitted:
                log = {
                    "address": item.address,
                    "topics": list(item.topics),
                    "data": item.data,
                    "blockNumber": number_hex,
                    "blockHash": block_hash,
                    "transactionHash": tx_hash,
                    "transactionIndex": hex(index),
                    "logIndex": hex(len(logs)),
                    "removed": False,
                }
                if self.log_timestamps:
                    log["blockTimestamp"] = time_hex
                if item.row is not None:
                    contract = BY_ADDRESS[item.address]
                    r = item.row
                    expected[(self.chain, tx_hash, len(logs))] = ExpectedRow(
                        number, block_hash, time, item.address, r.event_type, r.staker, r.counterparty, r.pool,
                        r.amount, r.token_id, r.unlock_time, contract.asset,
                    )  # fmt: skip
                logs.append(log)
        block = Block(
            number,
            block_hash,
            parent_hash,
            time,
            tuple(Tx(tx_hash, index, call) for index, (tx_hash, call, _) in enumerate(txs)),
            tuple(logs),
            expected,
            state,
        )
        self.canonical.append(block)
        self.block_by_hash[block_hash] = block
        self.heights.setdefault(number, []).append(block_hash)
        for tx in block.txs:
            self.tx_blocks.setdefault(tx.hash, []).append(block_hash)
        return block


def _hash(unique: bytes) -> str:
    """A 32-byte 0x hash of something unique (blake2b: only uniqueness matters, and keccak is 15 times slower)."""
    return "0x" + hashlib.blake2b(unique, digest_size=32).hexdigest()

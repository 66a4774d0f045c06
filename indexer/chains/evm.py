"""The EVM source: contract logs over adaptive block ranges, block times, and string pool names.

One range costs one HTTP request in the common case: `eth_getLogs` and the
range end's header travel in one JSON-RPC batch. Headers of blocks holding
logs are fetched (batched) only when the node does not put `blockTimestamp`
on its logs; calldata and traces only for pool hashes not seen before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from indexer.batch import Batch, BlockRef
from indexer.chains.batches import block_batches
from indexer.chains.common import checked, pool_names_in, unnamed_pools
from indexer.chains.log_range import LogRange, is_range_too_large
from indexer.chains.node_source import NodeSource
from indexer.chains.rpc import JsonRpcError, RpcClient
from indexer.decode.calldata import calls_to
from indexer.decode.logs import ChainSpec, LogDecoder, MalformedLog, RpcLog, log_block_number
from indexer.errors import RetryableError, RpcError
from indexer.events import Event
from indexer.reorg import unlinked

HEADER_BATCH = 200  # block headers per JSON-RPC batch
TX_BATCH = 100  # transactions or traces per JSON-RPC batch

log = structlog.get_logger(__name__)


def block_ref(header: Mapping[str, Any]) -> BlockRef:
    """A BlockRef from an `eth_getBlockByNumber` answer; ValueError if malformed."""
    try:
        return BlockRef(
            number=int(header["number"], 16),
            hash=header["hash"].lower(),
            parent_hash=header["parentHash"].lower(),
            time=int(header["timestamp"], 16),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed block header: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class FetchedLogs:
    """Logs fetched for blocks `first_block..last.number`, not yet decoded."""

    first_block: int
    last: BlockRef
    logs: list[RpcLog]
    headers: dict[int, BlockRef]  # blocks whose headers came with the logs


class EvmSource(NodeSource):
    """Reads one EVM chain's configured contracts."""

    def __init__(self, chain: Any, rpc: RpcClient, pool_names: Mapping[str, str] | None = None) -> None:
        self.chain = chain
        self.name: str = chain.name
        self.rpc = rpc
        self.spec = ChainSpec(chain.name, chain.chain_id)
        self.contracts = {c.address: c for c in chain.contracts}
        self.decoders = {c.address: LogDecoder(c, self.spec) for c in chain.contracts}
        self.addresses = sorted(self.contracts)
        self.pool_names: dict[str, str] = dict(pool_names or {})
        self.range = LogRange(
            size=min(chain.initial_block_range, chain.max_block_range),
            ceiling=chain.max_block_range,
            target_logs=chain.target_logs_per_request,
        )
        self.use_call_tracer: bool = chain.use_call_tracer
        self.verify_log_blocks: bool = chain.verify_log_blocks
        self.log = log.bind(chain=chain.name)

    async def poll(self, cursor: int | None) -> tuple[int, BlockRef | None]:
        """The node's head and its block at height `cursor` (to check the cursor is still canonical), in one request."""
        calls: list[tuple[str, list[Any]]] = [("eth_blockNumber", [])]
        if cursor is not None:
            calls.append(("eth_getBlockByNumber", [hex(cursor), False]))
        answers = await self.rpc.batch(calls)
        if isinstance(answers[0], JsonRpcError):
            raise RpcError(f"chain {self.name}: eth_blockNumber failed: {answers[0].message}")
        head = _hex_int(answers[0], "eth_blockNumber")
        if cursor is None:
            return head, None
        header = answers[1]
        if isinstance(header, JsonRpcError) or header is None:
            return head, None  # the block is gone (the chain got shorter) or the node lags: not canonical
        return head, checked(block_ref, header)

    async def blocks(self, numbers: list[int]) -> dict[int, BlockRef]:
        """The node's canonical blocks at these heights (absent where it has none), batched."""
        chunks = [numbers[i : i + HEADER_BATCH] for i in range(0, len(numbers), HEADER_BATCH)]
        answers = await asyncio.gather(
            *(self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk]) for chunk in chunks)
        )
        found: dict[int, BlockRef] = {}
        for chunk, headers in zip(chunks, answers, strict=True):
            for number, header in zip(chunk, headers, strict=True):
                if isinstance(header, dict):
                    found[number] = checked(block_ref, header)
        return found

    async def fetch_logs(self, start: int, last_allowed: int, headers_from: int | None = None) -> FetchedLogs:
        """The configured contracts' logs of blocks `start..end`, `end <= last_allowed` as far as the range reaches.

        Blocks at or above `headers_from` (the unconfirmed zone) come with their headers, in the
        same request, so that every block there is remembered and its parent hash checked. The
        range's first block always does: its parent hash must be the cursor's (the store checks it),
        even when it holds no log, so that a range never goes on from an orphaned block.
        """
        while True:
            end = min(start + self.range.size - 1, last_allowed)
            first_header = end if headers_from is None else max(start, min(headers_from, end))
            numbers = [start, *range(max(start + 1, first_header), end + 1)]
            answers = await self.rpc.batch(
                [("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end), "address": self.addresses}])]
                + [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
            )
            logs, headers = answers[0], answers[1:]
            if isinstance(logs, JsonRpcError):
                if is_range_too_large(logs.message) and end > start:
                    self.range = self.range.refused(logs.message, start)
                    self.log.info("log_range_shrunk", size=self.range.size, reason=logs.message[:200])
                    continue
                raise RpcError(f"chain {self.name}: eth_getLogs {start}-{end} failed: {logs.message}")
            break
        if any(isinstance(h, JsonRpcError) or h is None for h in headers):
            raise RetryableError(f"chain {self.name}: the node lacks a block of {start}-{end} (lagging node?)")
        known = {ref.number: ref for ref in (checked(block_ref, h) for h in headers)}
        broken = unlinked([known[number] for number in range(first_header, end + 1)])
        if broken is not None:
            raise RetryableError(
                f"chain {self.name}: blocks {broken.number - 1} and {broken.number} do not link (reorg)"
            )
        if not isinstance(logs, list) or not all(isinstance(item, dict) for item in logs):
            raise RetryableError(f"chain {self.name}: eth_getLogs answered something other than a list of logs")
        self.range = self.range.grown(len(logs))
        ours = [item for item in logs if not item.get("removed") and self._follows(item, start)]
        ours.sort(key=_log_position)  # nodes answer in order; a block must never straddle two batches
        return FetchedLogs(start, known[end], ours, known)

    async def batches(self, fetched: FetchedLogs) -> AsyncIterator[Batch]:
        """The fetched range as batches of about `target_logs_per_request` logs, split at block boundaries.

        Chunks are decoded one at a time, so the first can be written while the next is decoded.
        """
        logs, last = fetched.logs, fetched.last
        blocks = await self._blocks_of(logs, fetched.headers)
        learnt = await self._learn_pool_names(logs)
        times = {number: block.time for number, block in blocks.items()}

        def decode(chunk: Sequence[RpcLog]) -> tuple[Event, ...]:
            try:
                decoded = (
                    self.decoders[item["address"].lower()].decode(item, self.pool_names, times) for item in chunk
                )
                return tuple(event for event in decoded if event is not None)
            except MalformedLog as exc:
                raise RetryableError(f"chain {self.name}: {exc}") from exc

        async for batch in block_batches(
            self.name, fetched.first_block, last, logs, blocks, self.range.target_logs, decode, learnt
        ):
            yield batch

    def _follows(self, log: RpcLog, start: int) -> bool:
        """Whether a log comes from a configured contract at or after its start block."""
        contract = self.contracts.get(str(log.get("address", "")).lower())
        if contract is None:
            return False
        return contract.start_block <= start or checked(log_block_number, log) >= contract.start_block

    async def _blocks_of(self, logs: list[RpcLog], headers: dict[int, BlockRef]) -> dict[int, BlockRef]:
        """Headers of the blocks holding logs, each log's block hash checked against them.

        Headers are fetched in batches; with `verify_log_blocks` off, only for logs without
        `blockTimestamp` (a log then vouches for its own block's hash).
        """
        blocks = dict(headers)
        verify = self.verify_log_blocks
        missing = sorted(
            {log_block_number(log) for log in logs if verify or not log.get("blockTimestamp")} - blocks.keys()
        )
        fetched = await self.blocks(missing)
        if len(fetched) != len(missing):
            raise RetryableError(f"chain {self.name}: the node lacks blocks holding logs (lagging node?)")
        blocks |= fetched
        for log in logs:
            number = log_block_number(log)
            known = blocks.get(number)
            log_hash = str(log.get("blockHash", "")).lower()
            if known is None:  # the log vouches for its own block's hash
                time = _hex_int(log.get("blockTimestamp"), "blockTimestamp")
                blocks[number] = known = BlockRef(number, log_hash, None, time)
            if known.hash != log_hash:
                raise RetryableError(
                    f"chain {self.name}: log in block {number} has hash {log_hash}, "
                    f"the node's block has {known.hash} (reorg in progress or stale node)"
                )
        # Headers of log blocks may come from another request, and so another node, than the range's own: a
        # stale node's header agreeing with a mid-reorg log answer would pass the check above. Neighbours must
        # still link (the simulation found an orphaned block stored under its canonical successor: seed 551).
        broken = unlinked([blocks[n] for n in sorted(blocks)], consecutive_only=True)
        if broken is not None:
            raise RetryableError(
                f"chain {self.name}: block {broken.number} does not follow block {broken.number - 1} "
                "(reorg in progress or stale node)"
            )
        return blocks

    async def _learn_pool_names(self, logs: list[RpcLog]) -> dict[str, str]:
        """Names of `string indexed` pools not seen before, from calldata, else from call traces."""
        wanted = unnamed_pools(logs, self.contracts, self.pool_names)  # tx hash -> contracts to read calldata of
        if not wanted:
            return {}
        learnt: dict[str, str] = {}
        txs = await self._batched("eth_getTransactionByHash", [[h] for h in wanted])
        untraced: list[str] = []
        for tx_hash, tx in zip(wanted, txs, strict=True):
            if isinstance(tx, dict) and str(tx.get("to", "")).lower() in wanted[tx_hash]:
                learnt |= pool_names_in(tx.get("input", ""))
            else:
                untraced.append(tx_hash)
        if untraced and self.use_call_tracer:
            learnt |= await self._names_from_traces(untraced, wanted)
        self.pool_names |= learnt
        return learnt

    async def _names_from_traces(self, tx_hashes: list[str], contracts: Mapping[str, set[str]]) -> dict[str, str]:
        traces = await self._batched("debug_traceTransaction", [[h, {"tracer": "callTracer"}] for h in tx_hashes])
        learnt: dict[str, str] = {}
        for tx_hash, trace in zip(tx_hashes, traces, strict=True):
            if isinstance(trace, JsonRpcError):
                if not _method_missing(trace):  # e.g. a lagging node that does not know the tx yet: ask again
                    raise RetryableError(f"chain {self.name}: debug_traceTransaction {tx_hash}: {trace.message[:200]}")
                self.use_call_tracer = False
                self.log.warning("call_tracer_unavailable", reason=trace.message[:200])
                return learnt
            if isinstance(trace, dict):
                for contract in contracts[tx_hash]:
                    for frame in calls_to(trace, contract):
                        learnt |= pool_names_in(frame.get("input", ""))
        return learnt

    async def _batched(self, method: str, params: list[list[Any]]) -> list[Any]:
        chunks = [params[i : i + TX_BATCH] for i in range(0, len(params), TX_BATCH)]
        answers = await asyncio.gather(*(self.rpc.batch([(method, p) for p in chunk]) for chunk in chunks))
        return [item for answer in answers for item in answer]

    async def close(self) -> None:
        await self.rpc.close()


def _log_position(log: RpcLog) -> tuple[int, int]:
    return (checked(log_block_number, log), _hex_int(log.get("logIndex"), "logIndex"))


def _method_missing(error: JsonRpcError) -> bool:
    """Whether a node's error says the method itself is not there (not that this call failed)."""
    message = error.message.lower()
    return error.code == -32601 or any(
        words in message for words in ("does not exist", "not available", "not supported", "method not found")
    )


def _hex_int(value: Any, what: str) -> int:
    try:
        return int(value, 16)
    except (TypeError, ValueError) as exc:
        raise RetryableError(f"{what}: malformed answer {value!r:.80}") from exc

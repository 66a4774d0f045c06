"""The TRON source: contract logs block by block over the TRON HTTP API, decoded like EVM logs.

TRON contracts are EVM contracts with 41-prefixed addresses, so each TRON log
is converted to the shape of an `eth_getLogs` log and decoded by the same
`LogDecoder`; the addresses of the resulting events are then rewritten to
base58 (`T...`), the canonical TRON form stored and shown.

Each block costs two requests: `wallet/getblockbynum` (header, parent link and
the calldata that names string pools) and `wallet/gettransactioninfobyblocknum`
(every log of the block). TRON numbers logs per transaction; here a log's index
is its position in the whole block (transactions in block order), so
(block, log index) is a total order as on EVM. Block and transaction ids are
stored as `0x` + lower-case hex, like EVM hashes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from indexer.batch import Batch, BlockRef
from indexer.chains.batches import block_batches
from indexer.chains.common import checked, pool_names_in, unnamed_pools
from indexer.chains.node_source import NodeSource
from indexer.config import tron_address, tron_evm_address
from indexer.decode.logs import ChainSpec, LogDecoder, MalformedLog, RpcLog
from indexer.errors import RetryableError, RpcError
from indexer.events import Event
from indexer.redact import redact_url
from indexer.reorg import unlinked

API_KEY_HEADER = "TRON-PRO-API-KEY"
BLOCKS_PER_FETCH = 100  # blocks read per `fetch_logs` call (two requests each)
CONCURRENCY = 8  # requests in flight at once
log = structlog.get_logger(__name__)


class _Transport(Exception):
    """No usable answer from one URL; another URL, or a later try, may do better."""


class _RateLimited(_Transport):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def block_ref(block: Mapping[str, Any]) -> BlockRef:
    """A BlockRef from a `getblockbynum`/`getnowblock` answer; ValueError if malformed."""
    try:
        raw = block["block_header"]["raw_data"]
        return BlockRef(
            number=int(raw.get("number", 0)),  # java-tron omits zero fields (the genesis number)
            hash="0x" + str(block["blockID"]).lower().removeprefix("0x"),
            parent_hash="0x" + str(raw["parentHash"]).lower().removeprefix("0x"),
            time=int(raw["timestamp"]) // 1000,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed TRON block: {exc!r}") from exc


def tron_log_to_rpc(log: Mapping[str, Any], block: BlockRef, tx_id: str, index: int) -> dict[str, Any]:
    """One log of a TRON transaction info as an `eth_getLogs` log (pure).

    `index` is the log's position in the whole block. A missing `data` (events whose
    arguments are all indexed) is empty data. ValueError if the log is malformed.
    """
    try:
        address = str(log["address"]).lower().removeprefix("0x")
        if len(address) == 42 and address.startswith("41"):
            address = address[2:]
        if len(address) != 40:
            raise ValueError(f"bad log address {address!r:.60}")
        topics = ["0x" + str(t).lower().removeprefix("0x") for t in log.get("topics") or ()]
        data = str(log.get("data") or "").lower().removeprefix("0x")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed TRON log: {exc!r}") from exc
    return {
        "address": "0x" + address,
        "topics": topics,
        "data": "0x" + data,
        "blockNumber": hex(block.number),
        "blockHash": block.hash,
        "blockTimestamp": hex(block.time),
        "transactionHash": "0x" + tx_id.lower().removeprefix("0x"),
        "logIndex": hex(index),
        "removed": False,
    }


def block_logs(block: Mapping[str, Any], infos: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every log of a block as `eth_getLogs` logs, indexed across the block (pure).

    `infos` is the `gettransactioninfobyblocknum` answer for the same block; its
    transactions must belong to the block (else the two answers came from different
    forks: ValueError). Failed transactions carry no logs.
    """
    ref = block_ref(block)
    order = [str(tx.get("txID", "")).lower() for tx in block.get("transactions") or ()]
    position = {tx_id: i for i, tx_id in enumerate(order)}
    by_tx: dict[str, Mapping[str, Any]] = {}
    for info in infos:
        tx_id = str(info.get("id", "")).lower()
        if tx_id not in position:
            raise ValueError(f"transaction info {tx_id:.64} is not in block {ref.number} {ref.hash}")
        if int(info.get("blockNumber", ref.number)) != ref.number:
            raise ValueError(f"transaction info {tx_id:.64} names block {info.get('blockNumber')}, not {ref.number}")
        by_tx[tx_id] = info
    logs: list[dict[str, Any]] = []
    for tx_id in order:
        info = by_tx.get(tx_id)
        if info is None or info.get("result") == "FAILED":
            continue
        for item in info.get("log") or ():
            logs.append(tron_log_to_rpc(item, ref, tx_id, len(logs)))
    return logs


def calldata_by_tx(block: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per transaction (`0x` id): (called contract as `0x` hex20, calldata `0x` hex) of its smart-contract calls."""
    calls: dict[str, list[tuple[str, str]]] = {}
    for tx in block.get("transactions") or ():
        tx_id = "0x" + str(tx.get("txID", "")).lower()
        for contract in (tx.get("raw_data") or {}).get("contract") or ():
            if contract.get("type") != "TriggerSmartContract":
                continue
            value = (contract.get("parameter") or {}).get("value") or {}
            target = str(value.get("contract_address", "")).lower()
            if len(target) == 42 and target.startswith("41"):
                calls.setdefault(tx_id, []).append(("0x" + target[2:], "0x" + str(value.get("data", ""))))
    return calls


def to_base58(event: Event) -> Event:
    """The event with its addresses (contract, staker, counterparty, address pool) in base58."""
    pool = event.pool
    if pool is not None and event.pool_hash is None:  # an address pool; a string pool keeps its name
        pool = tron_address(pool)
    return event._replace(
        contract=tron_address(event.contract),
        staker=tron_address(event.staker) if event.staker else event.staker,
        counterparty=tron_address(event.counterparty) if event.counterparty else event.counterparty,
        pool=pool,
    )


@dataclass(frozen=True, slots=True)
class FetchedTronLogs:
    """Logs fetched for blocks `first_block..last.number`, not yet decoded."""

    first_block: int
    last: BlockRef
    logs: list[RpcLog]
    headers: dict[int, BlockRef]
    pool_names: dict[str, str] = field(default_factory=dict)  # learnt from this range's calldata


class TronHttp:
    """POST JSON to a TRON node's HTTP API, with failover across URLs and backoff on rate limits."""

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        attempts: int = 6,
        max_backoff: float = 5.0,
    ) -> None:
        if not urls:
            raise ValueError(f"chain {chain}: no TRON API URL")
        self.chain = chain
        self._urls = [u.rstrip("/") for u in urls]
        self._labels = [redact_url(u) for u in urls]
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers[API_KEY_HEADER] = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._max_backoff = max_backoff
        self._current = 0
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self.log = log.bind(chain=chain)

    async def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON answer; RpcError when every try on every URL failed."""
        failures: list[str] = []
        for attempt in range(self._attempts):
            index = self._current
            try:
                async with self._limit:
                    return await self._post_once(index, path, body or {})
            except _Transport as exc:
                failures.append(str(exc))
                if len(self._urls) > 1 and self._current == index:
                    self._current = (index + 1) % len(self._urls)
                if attempt + 1 == self._attempts:
                    break
                delay = min(0.05 * 2**attempt, self._max_backoff) * (1 + random.random() / 10)
                if isinstance(exc, _RateLimited):
                    delay = max(delay, min(exc.retry_after or 0.0, self._max_backoff))
                    self.log.warning("tron_rate_limited", url=self._labels[index], path=path, in_seconds=delay)
                await asyncio.sleep(delay)
        raise RpcError(f"chain {self.chain}: {path} failed on every TRON API URL ({failures[-1]})")

    async def _post_once(self, index: int, path: str, body: Mapping[str, Any]) -> Any:
        label = self._labels[index]
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        # Causes are dropped (`from None`): aiohttp's exceptions carry the raw URL and may carry secrets.
        try:
            async with self._session.post(self._urls[index] + path, json=dict(body), headers=self._headers) as answer:
                if answer.status == 429:
                    raise _RateLimited(f"HTTP 429 from {label}", _seconds(answer.headers.get("Retry-After")))
                if answer.status >= 400:
                    raise _Transport(f"HTTP {answer.status} from {label}")
                payload = await answer.json(content_type=None)
        except _Transport:
            raise
        except TimeoutError:
            raise _Transport(f"timeout from {label}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Transport(f"{type(exc).__name__} from {label}") from None
        except ValueError:
            raise _Transport(f"malformed JSON from {label}") from None
        if isinstance(payload, dict) and "Error" in payload:
            raise _Transport(f"error from {label}: {str(payload['Error'])[:200]}")
        return payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class TronSource(NodeSource):
    """Reads one TRON chain's configured contracts (the watcher's Source protocol)."""

    def __init__(self, chain: Any, http: TronHttp | None = None, pool_names: Mapping[str, str] | None = None) -> None:
        self.chain = chain
        self.name: str = chain.name
        self.http = http or TronHttp(
            chain.name, chain.rpc, api_key=chain.api_key, timeout=chain.request_timeout_seconds
        )
        self.spec = ChainSpec(chain.name, chain.chain_id)
        self.contracts = {tron_evm_address(c.address): c for c in chain.contracts}  # 0x hex20 -> contract
        self.decoders = {address: LogDecoder(c, self.spec) for address, c in self.contracts.items()}
        self.pool_names: dict[str, str] = dict(pool_names or {})
        self.blocks_per_fetch = max(1, min(BLOCKS_PER_FETCH, chain.max_block_range))
        self.target_logs = chain.target_logs_per_request
        self.log = log.bind(chain=chain.name)

    async def head(self) -> int:
        """The node's latest block number."""
        return checked(block_ref, await self.http.post("/wallet/getnowblock")).number

    async def solidified(self) -> int:
        """The node's solidified (final) block number: the confirmed height on TRON."""
        return checked(block_ref, await self.http.post("/walletsolidity/getnowblock")).number

    async def poll(self, cursor: int | None) -> tuple[int, BlockRef | None]:
        """The node's head and its block at height `cursor` (None if it has none)."""
        if cursor is None:
            return await self.head(), None
        head, block = await _all([self.head(), self._block(cursor)])
        return head, None if block is None else checked(block_ref, block)

    async def blocks(self, numbers: list[int]) -> dict[int, BlockRef]:
        """The node's canonical blocks at these heights (absent where it has none)."""
        answers = await _all([self._block(n) for n in numbers])
        return {n: checked(block_ref, b) for n, b in zip(numbers, answers, strict=True) if b is not None}

    async def fetch_logs(self, start: int, last_allowed: int, headers_from: int | None = None) -> FetchedTronLogs:
        """The configured contracts' logs of blocks `start..end`, `end <= last_allowed`, every header checked.

        Every block of the range is read anyway, so all headers come along (and are
        remembered by the store where they fall in its window), and every parent link is checked.
        """
        end = min(start + self.blocks_per_fetch - 1, last_allowed)
        numbers = list(range(start, end + 1))
        answers = await _all(
            [self._block(n) for n in numbers]
            + [self.http.post("/wallet/gettransactioninfobyblocknum", {"num": n}) for n in numbers]
        )
        blocks, infos = answers[: len(numbers)], answers[len(numbers) :]
        headers: dict[int, BlockRef] = {}
        ours: list[RpcLog] = []
        learnt: dict[str, str] = {}
        for number, block, info in zip(numbers, blocks, infos, strict=True):
            if block is None:
                raise RetryableError(f"chain {self.name}: the node lacks block {number} (lagging node?)")
            ref = checked(block_ref, block)
            if ref.number != number:
                raise RetryableError(f"chain {self.name}: asked for block {number}, the node answered {ref.number}")
            if not isinstance(info, list) or not all(isinstance(i, dict) for i in info):
                raise RetryableError(f"chain {self.name}: transaction infos of block {number} are not a list")
            broken = unlinked([b for b in (headers.get(number - 1), ref) if b is not None])
            if broken is not None:
                raise RetryableError(f"chain {self.name}: blocks {number - 1} and {number} do not link (reorg)")
            try:
                logs = block_logs(block, info)
            except ValueError as exc:  # the two answers came from different forks
                raise RetryableError(f"chain {self.name}: {exc} (reorg in progress?)") from exc
            headers[number] = ref
            mine = [item for item in logs if self._follows(item)]
            ours.extend(mine)
            learnt |= self._learn_pool_names(mine, block)
        self.pool_names |= learnt
        return FetchedTronLogs(start, headers[end], ours, headers, learnt)

    async def batches(self, fetched: FetchedTronLogs) -> AsyncIterator[Batch]:
        """The fetched range as batches of about `target_logs_per_request` logs, split at block boundaries."""
        blocks, logs, last = fetched.headers, fetched.logs, fetched.last
        times = {number: block.time for number, block in blocks.items()}

        def decode(chunk: Sequence[RpcLog]) -> tuple[Event, ...]:
            try:
                decoded = (self.decoders[item["address"]].decode(item, self.pool_names, times) for item in chunk)
                return tuple(to_base58(event) for event in decoded if event is not None)
            except (MalformedLog, ValueError) as exc:
                raise RetryableError(f"chain {self.name}: {exc}") from exc

        async for batch in block_batches(
            self.name, fetched.first_block, last, logs, blocks, self.target_logs, decode, fetched.pool_names
        ):
            yield batch

    async def close(self) -> None:
        await self.http.close()

    async def _block(self, number: int) -> Mapping[str, Any] | None:
        """The block at `number`, or None when the node has none (it answers `{}`)."""
        answer = await self.http.post("/wallet/getblockbynum", {"num": number})
        if not isinstance(answer, dict):
            raise RetryableError(f"chain {self.name}: getblockbynum {number} answered {type(answer).__name__}")
        return answer or None

    def _follows(self, item: RpcLog) -> bool:
        """Whether a log comes from a configured contract at or after its start block."""
        contract = self.contracts.get(item["address"])
        return contract is not None and int(item["blockNumber"], 16) >= contract.start_block

    def _learn_pool_names(self, logs: list[RpcLog], block: Mapping[str, Any]) -> dict[str, str]:
        """Names of `string indexed` pools not known yet, from the calldata of the block's calls to our contracts."""
        wanted = unnamed_pools(logs, self.contracts, self.pool_names)  # tx id -> contracts to read calldata of
        if not wanted:
            return {}
        learnt: dict[str, str] = {}
        for tx_id, calls in calldata_by_tx(block).items():
            for target, data in calls:
                if target in wanted.get(tx_id, ()):
                    learnt |= pool_names_in(data)
        return learnt


async def _all(calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """The results of `calls`, run concurrently; on a failure the others are cancelled and the first error raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as exc:
        raise exc.exceptions[0] from None
    return [task.result() for task in tasks]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

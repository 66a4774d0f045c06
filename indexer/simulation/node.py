"""A simulated JSON-RPC node in front of the simulated world, with deterministic faults.

`SimProvider` stands where `RpcClient` keeps its `HttpNode`s (one per URL): it has the
same `make_request`, `make_batch_request` and `disconnect`, and answers JSON-RPC
response objects. Faults are drawn per HTTP request (a batch is one request),
one draw per fault kind in a fixed order, from the provider's own `random.Random`,
so a seed replays the same faults. A fault of the answer's content (lagging head,
stale branch, logs of another branch, range refusal) holds for every call of the
request, as one node's answer would.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from indexer.simulation.world import Block, World

_CODE = "0x6080604052348015600f57600080fd5b50"  # some bytecode: the address holds a contract


@dataclass(frozen=True, slots=True)
class Faults:
    """The probability of each fault per request (0: never)."""

    rate_limit: float = 0.0  # HTTP 429, or a JSON-RPC error with code 429
    server_error: float = 0.0  # HTTP 500/502/503/504
    timeout: float = 0.0  # TimeoutError, as aiohttp's total timeout raises
    truncated: float = 0.0  # the body is cut: json.JSONDecodeError
    range_limit: float = 0.0  # eth_getLogs over more than one block refused as returning too many results
    lagging_head: float = 0.0  # the node is 1-3 blocks behind: head, blocks and logs above are missing
    stale_branch: float = 0.0  # the node has not seen the last reorg: it serves an orphaned branch
    logs_disagree: float = 0.0  # eth_getLogs answers one block's logs with another block hash (mid-reorg)
    max_log_range: int = 0  # eth_getLogs over more blocks than this is always refused (0: no limit)

    def rates(self) -> list[tuple[str, float]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "max_log_range"]


class _View:
    """The chain as the node sees it for one request: `blocks` by number, up to `head`."""

    __slots__ = ("blocks", "head", "stale")

    def __init__(self, blocks: list[Block], head: int, stale: bool = False) -> None:
        self.blocks, self.head, self.stale = blocks, head, stale  # stale: knows no block of later branches

    def block(self, number: int) -> Block | None:
        return self.blocks[number] if 0 <= number <= self.head else None

    def holds(self, block: Block) -> bool:
        return self.block(block.number) is block


class SimProvider:
    """One simulated node. `requests` counts calls per method, `faults` counts the faults it injected."""

    def __init__(
        self,
        world: World,
        rng: random.Random,
        faults: Faults | None = None,
        name: str = "sim",
        *,
        call_tracer: bool = True,
    ) -> None:
        self.world, self.rng, self.name = world, rng, name
        self.faults_config = faults or Faults()
        self.call_tracer = call_tracer  # False: debug_traceTransaction does not exist on this node
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.http_requests = 0
        self._ids = 0
        self._branches: dict[str, list[Block]] = {}
        self._url = URL(f"http://{name}.sim/")
        self._rates = self.faults_config.rates()

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def make_request(self, method: str, params: Any) -> dict[str, Any]:
        (answer,) = self._serve([(method, params)])
        return answer

    async def make_batch_request(self, calls: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        return self._serve(list(calls))

    async def disconnect(self) -> None:
        return None

    def _serve(self, calls: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        self.http_requests += 1
        for method, _ in calls:
            self.requests[method] += 1
        fired = {name for name, rate in self._rates if self.rng.random() < rate}
        if "rate_limit" in fired:
            self.faults["rate_limit"] += 1
            if self.rng.random() < 0.5:
                raise self._http_error(429, "Too Many Requests")
            return [self._error(self._next_id(), 429, "Too many requests, rate limit exceeded") for _ in calls]
        for kind in ("server_error", "timeout", "truncated"):
            if kind in fired:
                self.faults[kind] += 1
                if kind == "server_error":
                    raise self._http_error(self.rng.choice((500, 502, 503, 504)), "Bad Gateway")
                if kind == "timeout":
                    raise TimeoutError()
                raise json.JSONDecodeError("Unterminated string starting at", '{"jsonrpc":"2.0","result":"0x', 29)
        view = self._view(fired)
        return [self._answer(method, params, view, fired) for method, params in calls]

    def _view(self, fired: set[str]) -> _View:
        world = self.world
        view = _View(world.canonical, world.head.number)
        if "stale_branch" in fired and world.orphans:
            self.faults["stale_branch"] += 1
            tip = self.rng.choice(world.orphans[-3:])
            if tip not in self._branches:
                self._branches[tip] = world.branch(tip)
            branch = self._branches[tip]
            view = _View(branch, len(branch) - 1, stale=True)
        if "lagging_head" in fired:
            self.faults["lagging_head"] += 1
            view.head = max(0, view.head - self.rng.randint(1, 3))
        return view

    def _answer(self, method: str, params: Any, view: _View, fired: set[str]) -> dict[str, Any]:
        request_id = self._next_id()
        try:
            result = self._result(method, list(params or ()), view, fired)
        except _RpcError as exc:
            return self._error(request_id, exc.code, exc.message)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    def _result(self, method: str, params: list[Any], view: _View, fired: set[str]) -> Any:
        world = self.world
        if method == "eth_chainId":
            return hex(world.chain_id)
        if method == "eth_blockNumber":
            return hex(view.head)
        if method == "eth_getBlockByNumber":
            block = view.block(_block_number(params[0], view))
            return None if block is None else block.header()
        if method == "eth_getBlockByHash":
            block = world.block_by_hash.get(str(params[0]).lower())
            if block is None or block.number > view.head or (view.stale and not view.holds(block)):
                return None  # a node that saw a reorg still knows the old branch; a stale one not the new
            return block.header()
        if method == "eth_getLogs":
            return self._logs(params[0], view, fired)
        if method in ("eth_getTransactionByHash", "debug_traceTransaction"):
            tx_hash = str(params[0]).lower()
            found = [
                world.block_by_hash[h] for h in world.tx_blocks.get(tx_hash, ()) if view.holds(world.block_by_hash[h])
            ]
            if method == "eth_getTransactionByHash":
                return world.transaction(tx_hash, found[0]) if found else None
            if not self.call_tracer:
                raise _RpcError(-32601, "the method debug_traceTransaction does not exist/is not available")
            if not found:
                raise _RpcError(-32000, f"transaction {tx_hash} not found")
            return world.trace(next(tx for tx in found[0].txs if tx.hash == tx_hash))
        if method == "eth_getCode":
            return _CODE if str(params[0]).lower() in world.code_addresses() else "0x"
        raise _RpcError(-32601, f"the method {method} does not exist/is not available")

    def _logs(self, query: dict[str, Any], view: _View, fired: set[str]) -> list[dict[str, Any]]:
        addresses = query.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        wanted = {a.lower() for a in addresses} if addresses else None  # none or []: every address
        if "blockHash" in query:
            block = self.world.block_by_hash.get(str(query["blockHash"]).lower())
            if block is None:
                raise _RpcError(-32000, "unknown block")
            blocks = [block]
        else:
            start = _block_number(query.get("fromBlock", "latest"), view)
            end = _block_number(query.get("toBlock", "latest"), view)
            if start > end:
                raise _RpcError(-32602, "invalid block range params")
            limit = self.faults_config.max_log_range
            if limit and end - start + 1 > limit:
                raise _RpcError(-32005, f"exceed maximum block range: {limit}")
            if "range_limit" in fired and end > start:
                self.faults["range_limit"] += 1
                half = start + (end - start + 1) // 2 - 1
                raise _RpcError(
                    -32005,
                    f"query returned more than 10000 results. Try with this block range [{hex(start)}, {hex(half)}].",
                )
            # like geth, a range reaching above the node's head is cut at the head, without an error
            blocks = [b for b in (view.block(n) for n in range(start, min(end, view.head) + 1)) if b is not None]
        answer = []
        disagree = self._disagreeing(blocks, wanted) if "logs_disagree" in fired else None
        for block in blocks:
            logs = block.logs
            if disagree is not None and block.number == disagree[0]:
                logs = disagree[1]
            answer += [
                {**log, "topics": list(log["topics"])} for log in logs if wanted is None or log["address"] in wanted
            ]
        return answer

    def _disagreeing(self, blocks: list[Block], wanted: set[str] | None) -> tuple[int, list[dict[str, Any]]] | None:
        """One block's logs as a node mid-reorg answers them: another branch's, or under a hash no header has."""
        holding = [b for b in blocks if any(wanted is None or log["address"] in wanted for log in b.logs)]
        if not holding:
            return None
        self.faults["logs_disagree"] += 1
        block = self.rng.choice(holding)
        # a sibling without logs of ours would make the answer wrong in a way no client can see: not that one
        siblings = [
            sibling
            for sibling in (self.world.block_by_hash[h] for h in self.world.heights[block.number] if h != block.hash)
            if any(wanted is None or log["address"] in wanted for log in sibling.logs)
        ]
        if siblings:
            return block.number, list(self.rng.choice(siblings).logs)
        fake = "0x" + hashlib.blake2b(b"mid-reorg" + block.hash.encode(), digest_size=32).hexdigest()
        return block.number, [{**log, "blockHash": fake} for log in block.logs]

    def _error(self, request_id: int, code: int, message: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}

    def _http_error(self, status: int, message: str) -> aiohttp.ClientResponseError:
        info = aiohttp.RequestInfo(self._url, "POST", CIMultiDictProxy(CIMultiDict()), self._url)
        return aiohttp.ClientResponseError(info, (), status=status, message=message)


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _block_number(tag: Any, view: _View) -> int:
    if tag in ("latest", "pending", "safe", "finalized", None):
        return view.head
    if tag == "earliest":
        return 0
    return int(tag, 16)

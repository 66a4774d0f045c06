"""A TRON node test peer: a local aiohttp server answering the TRON HTTP API with its documented JSON shapes.

It stands in for java-tron (or TronGrid) in tests: a scripted chain of blocks
whose transactions call contracts and emit real ABI-encoded logs, forks that
replace the newest blocks, HTTP error answers (429 rate limits), and a record
of every request (path, headers, body). Shapes follow java-tron: hex without
`0x`, contract addresses `41`-prefixed, log addresses 20-byte hex, log `data`
omitted when empty, zero/empty fields omitted, timestamps in milliseconds.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from eth_abi import encode as abi_encode
from eth_utils import keccak
from tronpy import keys

GENESIS_TIME_MS = 1_700_000_000_000
BLOCK_INTERVAL_MS = 3_000


def hex41(address: str) -> str:
    """A TRON address (base58 or 41-hex) as 41 + 40 hex."""
    if address.startswith("T"):
        return keys.to_hex_address(address)
    text = address.lower().removeprefix("0x")
    return text if len(text) == 42 else "41" + text


def base58(address: str) -> str:
    return keys.to_base58check_address(hex41(address))


def random_address(seed: str) -> str:
    """A deterministic base58 TRON address from `seed`."""
    return base58("41" + hashlib.sha256(seed.encode()).hexdigest()[:40])


def _topic(signature: str) -> str:
    return keccak(text=signature).hex()


def _word(address: str) -> str:
    return "0" * 24 + hex41(address)[2:]


def _uint(value: int) -> str:
    return f"{value:064x}"


@dataclass
class Log:
    address: str  # 41-hex of the emitting contract
    topics: list[str]  # hex64 without 0x
    data: str = ""  # hex without 0x; empty means the key is omitted

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address[2:], "topics": self.topics}
        if self.data:
            out["data"] = self.data
        return out


@dataclass
class Tx:
    """A TriggerSmartContract transaction: a call to `contract` with `calldata`, and the logs it emitted."""

    contract: str  # 41-hex
    calldata: str = ""  # hex without 0x
    logs: list[Log] = field(default_factory=list)
    owner: str = "41" + "11" * 20
    failed: bool = False
    tx_id: str = ""


# --- logs of the multistaking contracts (SPEC section 2), ABI-encoded -------------------------------------------


def stake(contract: str, staker: str, pool: str, amount: int) -> Tx:
    """native v1 / erc20: StakeOccured(address indexed, address indexed, uint256 indexed)."""
    topics = [_topic("StakeOccured(address,address,uint256)"), _word(staker), _word(pool), _uint(amount)]
    call = keccak(text="stake(address)")[:4].hex() + abi_encode(["address"], ["0x" + hex41(pool)[2:]]).hex()
    logs = [_lst_transfer(contract, ZERO, staker, amount), Log(hex41(contract), topics)]  # mint, then the stake
    return Tx(hex41(contract), call, logs, owner=hex41(staker))


def unstake(contract: str, staker: str, pool: str, amount: int) -> Tx:
    """native v1: UnstakeOccured(address indexed, address indexed, uint256 indexed)."""
    topics = [_topic("UnstakeOccured(address,address,uint256)"), _word(staker), _word(pool), _uint(amount)]
    logs = [_lst_transfer(contract, staker, ZERO, amount), Log(hex41(contract), topics)]  # burn, then the unstake
    return Tx(hex41(contract), "", logs, owner=hex41(staker))


ZERO = "41" + "00" * 20


def _lst_transfer(contract: str, sender: str, receiver: str, amount: int) -> Log:
    topics = [_topic("Transfer(address,address,uint256)"), _word(sender), _word(receiver)]
    return Log(hex41(contract), topics, _uint(amount))


def transfer(contract: str, sender: str, receiver: str, amount: int) -> Tx:
    """The LST's TRC-20 Transfer(address indexed, address indexed, uint256): the value in data."""
    call = keccak(text="transfer(address,uint256)")[:4].hex()
    call += abi_encode(["address", "uint256"], ["0x" + hex41(receiver)[2:], amount]).hex()
    return Tx(hex41(contract), call, [_lst_transfer(contract, sender, receiver, amount)], owner=hex41(sender))


def stake_string(contract: str, staker: str, pool: str, amount: int) -> Tx:
    """native v2: stake(string) emitting StakeOccured(address indexed, string indexed, uint256 indexed)."""
    topics = [_topic("StakeOccured(address,string,uint256)"), _word(staker), keccak(text=pool).hex(), _uint(amount)]
    call = keccak(text="stake(string)")[:4].hex() + abi_encode(["string"], [pool]).hex()
    return Tx(hex41(contract), call, [Log(hex41(contract), topics)], owner=hex41(staker))


def unstake_request_string(contract: str, staker: str, pool: str, amount: int, unlock: int) -> Tx:
    """native v2: unstake(string,uint256) emitting UnstakeRequested(address indexed, string indexed, uint256 indexed,
    uint256)."""
    topics = [
        _topic("UnstakeRequested(address,string,uint256,uint256)"),
        _word(staker),
        keccak(text=pool).hex(),
        _uint(amount),
    ]
    call = keccak(text="unstake(string,uint256)")[:4].hex() + abi_encode(["string", "uint256"], [pool, amount]).hex()
    return Tx(hex41(contract), call, [Log(hex41(contract), topics, _uint(unlock))], owner=hex41(staker))


def withdrawal(contract: str, staker: str, amount: int) -> Tx:
    """native v2: Withdrawal(address indexed, uint256 indexed)."""
    topics = [_topic("Withdrawal(address,uint256)"), _word(staker), _uint(amount)]
    return Tx(hex41(contract), "", [Log(hex41(contract), topics)], owner=hex41(staker))


def merged(*txs: Tx) -> Tx:
    """One transaction carrying the logs of several (as a multicall would), calling the first one's contract."""
    return Tx(txs[0].contract, txs[0].calldata, [item for tx in txs for item in tx.logs], owner=txs[0].owner)


# --- the node ----------------------------------------------------------------------------------------------------


@dataclass
class Block:
    number: int
    block_id: str
    parent: str
    timestamp_ms: int
    txs: list[Tx]

    def json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "parentHash": self.parent,
            "timestamp": self.timestamp_ms,
            "txTrieRoot": hashlib.sha256(self.block_id.encode()).hexdigest(),
            "witness_address": "41" + "22" * 20,
            "version": 30,
        }
        if self.number:  # java-tron omits zero-valued fields
            raw["number"] = self.number
        out: dict[str, Any] = {"blockID": self.block_id, "block_header": {"raw_data": raw, "witness_signature": "00"}}
        if self.txs:
            out["transactions"] = [self._tx_json(tx) for tx in self.txs]
        return out

    def _tx_json(self, tx: Tx) -> dict[str, Any]:
        value: dict[str, Any] = {"owner_address": tx.owner, "contract_address": tx.contract}
        if tx.calldata:
            value["data"] = tx.calldata
        return {
            "ret": [{"contractRet": "REVERT" if tx.failed else "SUCCESS"}],
            "signature": ["00" * 65],
            "txID": tx.tx_id,
            "raw_data": {
                "contract": [
                    {
                        "parameter": {"value": value, "type_url": "type.googleapis.com/protocol.TriggerSmartContract"},
                        "type": "TriggerSmartContract",
                    }
                ],
                "ref_block_bytes": f"{self.number & 0xFFFF:04x}",
                "expiration": self.timestamp_ms + 60_000,
                "fee_limit": 100_000_000,
                "timestamp": self.timestamp_ms - 1_000,
            },
            "raw_data_hex": "00",
        }

    def infos(self) -> list[dict[str, Any]]:
        out = []
        for tx in self.txs:
            info: dict[str, Any] = {
                "id": tx.tx_id,
                "fee": 345_000,
                "blockNumber": self.number,
                "blockTimeStamp": self.timestamp_ms,
                "contractResult": [""],
                "contract_address": tx.contract,
                "receipt": {"energy_usage_total": 30_000, "result": "REVERT" if tx.failed else "SUCCESS"},
            }
            if tx.failed:
                info["result"] = "FAILED"
            elif tx.logs:
                info["log"] = [item.json() for item in tx.logs]
            out.append(info)
        return out


class TronNode:
    """The scripted chain and the HTTP server answering for it (127.0.0.1, a free port)."""

    def __init__(self, solid_lag: int = 0) -> None:
        self.chain: list[Block] = []
        self.solid_lag = solid_lag
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.failures: dict[str, list[int]] = {}  # path -> HTTP statuses to answer next
        self.served_errors: list[tuple[str, int]] = []
        self._salt = itertools.count()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.mine([])  # genesis

    # scripting

    def mine(self, txs: Sequence[Tx], count: int = 1) -> list[Block]:
        """Append `count` blocks, the first holding `txs`."""
        made = []
        for i in range(count):
            made.append(self._append(list(txs) if i == 0 else []))
        return made

    def fork(self, depth: int, blocks: Sequence[Sequence[Tx]]) -> None:
        """Replace the newest `depth` blocks by `blocks` (each a list of transactions): new ids, new branch."""
        del self.chain[len(self.chain) - depth :]
        for txs in blocks:
            self._append(list(txs))

    def fail_next(self, path: str, *statuses: int) -> None:
        """Answer the next requests to `path` with these HTTP statuses (e.g. 429), one each."""
        self.failures.setdefault(path, []).extend(statuses)

    @property
    def head(self) -> Block:
        return self.chain[-1]

    def _append(self, txs: list[Tx]) -> Block:
        number = len(self.chain)
        parent = self.chain[-1].block_id if self.chain else "00" * 32
        salt = next(self._salt)
        for i, tx in enumerate(txs):
            digest = hashlib.sha256(f"{number}:{salt}:{i}:{tx.contract}:{tx.calldata}".encode()).hexdigest()
            tx.tx_id = digest
        digest = hashlib.sha256(f"{parent}:{salt}:{[t.tx_id for t in txs]}".encode()).hexdigest()
        block_id = f"{number:016x}" + digest[16:]  # java-tron: the number in the first 8 bytes
        block = Block(number, block_id, parent, GENESIS_TIME_MS + number * BLOCK_INTERVAL_MS, txs)
        self.chain.append(block)
        return block

    # serving

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/wallet/getnowblock", self._now)
        app.router.add_route("*", "/walletsolidity/getnowblock", self._solid)
        app.router.add_route("*", "/wallet/getblockbynum", self._by_num)
        app.router.add_route("*", "/wallet/gettransactioninfobyblocknum", self._infos)
        app.router.add_route("*", "/wallet/gettransactionbyid", self._tx_by_id)
        app.router.add_route("*", "/wallet/gettransactioninfobyid", self._info_by_id)
        app.router.add_route("*", "/wallet/getnodeinfo", self._node_info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json() if request.can_read_body else {}
        self.requests.append((request.path, dict(request.headers), body))
        pending = self.failures.get(request.path)
        if pending:
            status = pending.pop(0)
            self.served_errors.append((request.path, status))
            headers = {"Retry-After": "0"} if status == 429 else {}
            return body, web.json_response({"Error": "too many requests"}, status=status, headers=headers)
        return body, None

    async def _now(self, request: web.Request) -> web.Response:
        _, error = await self._body(request)
        return error or web.json_response(self.head.json())

    async def _solid(self, request: web.Request) -> web.Response:
        _, error = await self._body(request)
        return error or web.json_response(self.chain[max(0, len(self.chain) - 1 - self.solid_lag)].json())

    async def _node_info(self, request: web.Request) -> web.Response:
        _, error = await self._body(request)
        solid = self.chain[max(0, len(self.chain) - 1 - self.solid_lag)]
        return error or web.json_response(
            {
                "block": f"Num:{self.head.number},ID:{self.head.block_id}",
                "solidityBlock": f"Num:{solid.number},ID:{solid.block_id}",
                "configNodeInfo": {"codeVersion": "4.7.4"},
            }
        )

    def _at(self, body: dict[str, Any]) -> Block | None:
        number = int(body.get("num", 0))
        return self.chain[number] if 0 <= number < len(self.chain) else None

    async def _by_num(self, request: web.Request) -> web.Response:
        body, error = await self._body(request)
        block = self._at(body)
        return error or web.json_response(block.json() if block else {})

    async def _infos(self, request: web.Request) -> web.Response:
        body, error = await self._body(request)
        block = self._at(body)
        return error or web.json_response(block.infos() if block else [])

    def _find(self, tx_id: str) -> tuple[Block, int] | None:
        for block in self.chain:
            for i, tx in enumerate(block.txs):
                if tx.tx_id == tx_id:
                    return block, i
        return None

    async def _tx_by_id(self, request: web.Request) -> web.Response:
        body, error = await self._body(request)
        found = self._find(str(body.get("value", "")))
        return error or web.json_response(found[0].json()["transactions"][found[1]] if found else {})

    async def _info_by_id(self, request: web.Request) -> web.Response:
        body, error = await self._body(request)
        found = self._find(str(body.get("value", "")))
        return error or web.json_response(found[0].infos()[found[1]] if found else {})

"""Decode a contract log, as JSON-RPC `eth_getLogs` returns it, into a normalized `Event` (pure).

Every multistaking event has static arguments, so topics and data are sliced
by hand: exact, and several times faster than a generic ABI decoder. Other
sources (TRON) convert their logs to this same shape first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from indexer.decode import signatures as sig
from indexer.errors import DecodeError
from indexer.events import Event, EventType

RpcLog = Mapping[
    str, Any
]  # {"address", "topics", "data", "blockNumber", "blockHash", "transactionHash", "logIndex", ["blockTimestamp"]}


class MalformedLog(ValueError):
    """A log from the node lacks a field or holds a bad value: the node's answer cannot be trusted."""


class ContractSpec(Protocol):
    """What decoding needs to know of a configured contract."""

    name: str
    address: str  # canonical (lower-case) form
    kind: str
    version: int
    asset: str


@dataclass(frozen=True, slots=True)
class ChainSpec:
    name: str
    chain_id: int


def _address(word: str) -> str:
    return "0x" + word[-40:].lower()


def _data_word(data: str, index: int) -> int:
    start = 2 + 64 * index
    word = data[start : start + 64]
    if len(word) != 64:
        raise ValueError(f"log data too short for word {index}")
    return int(word, 16)


# A decoder returns the event-specific fields, in Event's order:
# (event_type, staker, counterparty, pool, pool_hash, amount, token_id, unlock_time)
Fields = tuple[EventType, str | None, str | None, str | None, str | None, int | None, int | None, int | None]
Decoder = Callable[[list[str], str, bool, Mapping[str, str]], Fields]


def _stake(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, staker, pool, amount = topics
    value = int(amount, 16)
    if nft:
        return (EventType.STAKE, _address(staker), None, _address(pool), None, 1, value, None)
    return (EventType.STAKE, _address(staker), None, _address(pool), None, value, None, None)


def _stake_string_pool(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, staker, pool_hash, amount = topics
    pool_hash = pool_hash.lower()
    return (EventType.STAKE, _address(staker), None, names.get(pool_hash), pool_hash, int(amount, 16), None, None)


def _unstake(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, unstaker, pool, amount = topics
    value = int(amount, 16)
    if nft:
        return (EventType.UNSTAKE, _address(unstaker), None, _address(pool), None, 1, value, None)
    return (EventType.UNSTAKE, _address(unstaker), None, _address(pool), None, value, None, None)


def _unstake_request(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, unstaker, pool, amount = topics
    unlock = _data_word(data, 0)
    value = int(amount, 16)
    if nft:  # ERC-721 v2: the request names the NFT
        return (EventType.UNSTAKE_REQUEST, _address(unstaker), None, _address(pool), None, 1, value, unlock)
    return (EventType.UNSTAKE_REQUEST, _address(unstaker), None, _address(pool), None, value, None, unlock)


def _unstake_request_string_pool(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, unstaker, pool_hash, amount = topics
    pool_hash = pool_hash.lower()
    unlock = _data_word(data, 0)
    return (
        EventType.UNSTAKE_REQUEST,
        _address(unstaker),
        None,
        names.get(pool_hash),
        pool_hash,
        int(amount, 16),
        None,
        unlock,
    )


def _unstake_batch(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, unstaker, total = topics
    return (EventType.UNSTAKE_BATCH, _address(unstaker), None, None, None, int(total, 16), None, _data_word(data, 0))


def _withdrawal(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    _, unstaker, amount = topics
    if nft:  # ERC-721 v2: one Withdrawal per NFT returned, carrying its token id
        return (EventType.WITHDRAWAL, _address(unstaker), None, None, None, 1, int(amount, 16), None)
    return (EventType.WITHDRAWAL, _address(unstaker), None, None, None, int(amount, 16), None, None)


def _transfer(topics: list[str], data: str, nft: bool, names: Mapping[str, str]) -> Fields:
    if nft:  # ERC-721: Transfer(address indexed, address indexed, uint256 indexed tokenId)
        _, sender, receiver, token_id = topics
        return (EventType.TRANSFER, _address(sender), _address(receiver), None, None, 1, int(token_id, 16), None)
    _, sender, receiver = topics  # ERC-20: the value is in data
    return (EventType.TRANSFER, _address(sender), _address(receiver), None, None, _data_word(data, 0), None, None)


_V1 = {sig.STAKE_ADDRESS_POOL: _stake, sig.UNSTAKE: _unstake, sig.TRANSFER: _transfer}
_V2_ADDRESS_POOLS = {
    sig.STAKE_ADDRESS_POOL: _stake,
    sig.UNSTAKE_REQUEST_ADDRESS_POOL: _unstake_request,
    sig.UNSTAKE_MULTIPLE_REQUESTED: _unstake_batch,
    sig.WITHDRAWAL: _withdrawal,
    sig.TRANSFER: _transfer,
}
_V2_STRING_POOLS = {
    sig.STAKE_STRING_POOL: _stake_string_pool,
    sig.UNSTAKE_REQUEST_STRING_POOL: _unstake_request_string_pool,
    sig.UNSTAKE_MULTIPLE_REQUESTED: _unstake_batch,
    sig.WITHDRAWAL: _withdrawal,
    sig.TRANSFER: _transfer,
}
_ERC721_V2 = {  # no unstakeMultiple
    sig.STAKE_ADDRESS_POOL: _stake,
    sig.UNSTAKE_REQUEST_ADDRESS_POOL: _unstake_request,
    sig.WITHDRAWAL: _withdrawal,
    sig.TRANSFER: _transfer,
}
DECODERS: dict[tuple[str, int], dict[str, Decoder]] = {
    ("native", 1): _V1,
    ("erc20", 1): _V1,
    ("erc721", 1): _V1,
    ("native", 2): _V2_STRING_POOLS,
    ("erc20", 2): _V2_ADDRESS_POOLS,
    ("erc721", 2): _ERC721_V2,
}
_STRING_POOL_TOPICS = (sig.STAKE_STRING_POOL, sig.UNSTAKE_REQUEST_STRING_POOL)


def log_block_number(log: RpcLog) -> int:
    """The block number of a log; MalformedLog if it has none."""
    try:
        return int(log["blockNumber"], 16)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedLog(f"log without a valid blockNumber: {dict(log)!r:.300}") from exc


class LogDecoder:
    """Decodes the logs of one configured contract (tables looked up once, not per log)."""

    __slots__ = ("_contract", "_decoders", "_head", "_nft")

    def __init__(self, contract: ContractSpec, chain: ChainSpec) -> None:
        decoders = DECODERS.get((contract.kind, contract.version))
        if decoders is None:
            raise DecodeError(f"contract {contract.name}: unsupported kind/version {contract.kind} v{contract.version}")
        self._contract = contract
        self._decoders = decoders
        self._nft = contract.kind == "erc721"
        self._head = (chain.name, chain.chain_id, contract.address, contract.kind, contract.version)

    def decode(self, log: RpcLog, pool_names: Mapping[str, str], block_times: Mapping[int, int]) -> Event | None:
        """The Event a log stands for; None for logs the indexer does not follow (e.g. Approval).

        The block time is the log's own `blockTimestamp` when the node sent one, else
        `block_times[block number]`. `pool_names` maps keccak256(name) -> name for
        `string indexed` pools; a hash missing from it leaves the event's pool unresolved.
        Raises DecodeError when a staking log does not fit the contract's declared kind/version,
        MalformedLog when the log itself is broken.
        """
        try:
            topics = log["topics"]
            topic0 = topics[0] if topics else None
            decoder = self._decoders.get(topic0) or self._decoders.get(topic0.lower() if topic0 else None)
            if decoder is None:
                if topic0 is not None and topic0.lower() in sig.ALL_STAKING_TOPICS:
                    raise DecodeError(
                        f"contract {self._contract.name} ({self._head[2]}) emitted a staking event of another "
                        f"contract version (topic {topic0}) in tx {log['transactionHash']}: check its `kind` "
                        "and `version` in the config"
                    )
                return None
            number = int(log["blockNumber"], 16)
            timestamp = log.get("blockTimestamp")
            block_time = int(timestamp, 16) if timestamp else block_times[number]
            block_hash, tx_hash, log_index = (
                log["blockHash"].lower(),
                log["transactionHash"].lower(),
                int(log["logIndex"], 16),
            )
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise MalformedLog(f"malformed log from node ({exc!r}): {dict(log)!r:.300}") from exc
        try:
            event_type, staker, counterparty, pool, pool_hash, amount, token_id, unlock = decoder(
                topics, log.get("data") or "0x", self._nft, pool_names
            )
        except (ValueError, TypeError) as exc:  # wrong topic count or short data
            raise DecodeError(
                f"contract {self._contract.name} ({self._head[2]}): log {tx_hash}#{log_index} does not match its "
                f"ABI ({exc}): check its `kind` and `version` in the config"
            ) from exc
        return Event(
            *self._head,
            number,
            block_hash,
            block_time,
            tx_hash,
            log_index,
            event_type,
            self._contract.asset,
            staker,
            counterparty,
            pool,
            pool_hash,
            amount,
            token_id,
            unlock,
        )


def needs_pool_name(log: RpcLog, contract: ContractSpec) -> str | None:
    """The pool hash a string-pool log carries (to be named from calldata), else None."""
    if contract.kind == "native" and contract.version == 2:
        topics = log.get("topics") or ()
        if len(topics) >= 3 and topics[0].lower() in _STRING_POOL_TOPICS:
            return topics[2].lower()
    return None

"""Decode a raw contract log into a normalized `Event` (pure).

Topics and data are sliced by hand: every multistaking event has static
arguments, so byte slicing is exact and several times faster than a generic
ABI decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from indexer.decode import signatures as sig
from indexer.errors import DecodeError
from indexer.events import Event, EventType



@dataclass(frozen=True, slots=True)
class RawLog:
    """A contract log as a node returns it, with hex kept as lower-case strings."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    block_time: int | None = None  # the node's `blockTimestamp`, when it sends one

    @classmethod
    def from_rpc(cls, log: Mapping[str, Any]) -> RawLog:
        """Build from an `eth_getLogs` entry; raises ValueError on a malformed one."""
        try:
            timestamp = log.get("blockTimestamp")
            return cls(
                address=log["address"].lower(),
                topics=tuple(t.lower() for t in log["topics"]),
                data=log.get("data") or "0x",
                block_number=int(log["blockNumber"], 16),
                block_hash=log["blockHash"].lower(),
                tx_hash=log["transactionHash"].lower(),
                log_index=int(log["logIndex"], 16),
                block_time=int(timestamp, 16) if timestamp else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed log from node: {exc!r} in {dict(log)!r:.300}") from exc


class ContractSpec(Protocol):
    """What decoding needs to know of a configured contract."""

    name: str
    kind: str
    version: int
    asset: str


@dataclass(frozen=True, slots=True)
class ChainSpec:
    name: str
    chain_id: int


def _address(word: str) -> str:
    return "0x" + word[-40:]


def _uint(word: str) -> int:
    return int(word, 16)


def _data_word(data: str, index: int) -> int:
    start = 2 + 64 * index
    word = data[start : start + 64]
    if len(word) != 64:
        raise ValueError(f"log data too short for word {index}")
    return int(word, 16)


# Each decoder returns the Event fields that depend on the event itself.
Fields = dict[str, Any]
Decoder = Callable[[RawLog, bool], Fields]


def _stake(log: RawLog, nft: bool) -> Fields:
    _, staker, pool, amount = log.topics
    fields: Fields = {"event_type": EventType.STAKE, "staker": _address(staker), "pool": _address(pool)}
    return fields | _amount_fields(_uint(amount), nft)


def _stake_string_pool(log: RawLog, nft: bool) -> Fields:
    _, staker, pool, amount = log.topics
    return {"event_type": EventType.STAKE, "staker": _address(staker), "pool_hash": pool, "amount": _uint(amount)}


def _unstake(log: RawLog, nft: bool) -> Fields:
    _, unstaker, pool, amount = log.topics
    fields: Fields = {"event_type": EventType.UNSTAKE, "staker": _address(unstaker), "pool": _address(pool)}
    return fields | _amount_fields(_uint(amount), nft)


def _unstake_request(log: RawLog, nft: bool) -> Fields:
    _, unstaker, pool, amount = log.topics
    return {
        "event_type": EventType.UNSTAKE_REQUEST,
        "staker": _address(unstaker),
        "pool": _address(pool),
        "amount": _uint(amount),
        "unlock_time": _data_word(log.data, 0),
    }


def _unstake_request_string_pool(log: RawLog, nft: bool) -> Fields:
    _, unstaker, pool, amount = log.topics
    return {
        "event_type": EventType.UNSTAKE_REQUEST,
        "staker": _address(unstaker),
        "pool_hash": pool,
        "amount": _uint(amount),
        "unlock_time": _data_word(log.data, 0),
    }


def _unstake_batch(log: RawLog, nft: bool) -> Fields:
    _, unstaker, total = log.topics
    return {
        "event_type": EventType.UNSTAKE_BATCH,
        "staker": _address(unstaker),
        "amount": _uint(total),
        "unlock_time": _data_word(log.data, 0),
    }


def _withdrawal(log: RawLog, nft: bool) -> Fields:
    _, unstaker, amount = log.topics
    return {"event_type": EventType.WITHDRAWAL, "staker": _address(unstaker), "amount": _uint(amount)}


def _transfer(log: RawLog, nft: bool) -> Fields:
    if nft:  # ERC-721: Transfer(address indexed, address indexed, uint256 indexed tokenId)
        _, sender, receiver, token_id = log.topics
        value = _uint(token_id)
    else:  # ERC-20: the value is in data
        _, sender, receiver = log.topics
        value = _data_word(log.data, 0)
    fields: Fields = {"event_type": EventType.TRANSFER, "staker": _address(sender), "counterparty": _address(receiver)}
    return fields | _amount_fields(value, nft)


def _amount_fields(value: int, nft: bool) -> Fields:
    return {"amount": 1, "token_id": value} if nft else {"amount": value}


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

DECODERS: dict[tuple[str, int], dict[str, Decoder]] = {
    ("native", 1): _V1,
    ("erc20", 1): _V1,
    ("erc721", 1): _V1,
    ("native", 2): _V2_STRING_POOLS,
    ("erc20", 2): _V2_ADDRESS_POOLS,
}


def decode_log(
    log: RawLog,
    contract: ContractSpec,
    chain: ChainSpec,
    block_time: int,
    pool_names: Mapping[str, str],
) -> Event | None:
    """The Event a log stands for, None for logs the indexer does not follow (e.g. Approval).

    `pool_names` maps keccak256(name) -> name for `string indexed` pools; a hash
    missing from it leaves the event's pool unresolved (`pool` None, `pool_hash` set).
    Raises DecodeError when a multistaking log does not fit the contract's declared kind/version.
    """
    topic0 = log.topics[0] if log.topics else None
    decoders = DECODERS.get((contract.kind, contract.version))
    if decoders is None:
        raise DecodeError(f"contract {contract.name}: unsupported kind/version {contract.kind} v{contract.version}")
    decoder = decoders.get(topic0) if topic0 else None
    if decoder is None:
        if topic0 in sig.ALL_STAKING_TOPICS:
            raise DecodeError(
                f"contract {contract.name} ({log.address}) emitted a staking event of another contract version "
                f"(topic {topic0}) in tx {log.tx_hash}: check its `kind` and `version` in the config"
            )
        return None
    nft = contract.kind == "erc721"
    try:
        fields = decoder(log, nft)
    except ValueError as exc:  # wrong topic count or short data
        raise DecodeError(
            f"contract {contract.name} ({log.address}): log {log.tx_hash}#{log.log_index} does not match "
            f"its ABI ({exc}): check its `kind` and `version` in the config"
        ) from exc
    pool_hash = fields.get("pool_hash")
    if pool_hash is not None:
        fields["pool"] = pool_names.get(pool_hash)
    return Event(
        chain=chain.name,
        chain_id=chain.chain_id,
        contract=log.address,
        contract_kind=contract.kind,
        contract_version=contract.version,
        block_number=log.block_number,
        block_hash=log.block_hash,
        block_time=block_time,
        tx_hash=log.tx_hash,
        log_index=log.log_index,
        asset=contract.asset,
        **fields,
    )


def needs_pool_name(log: RawLog, contract: ContractSpec) -> str | None:
    """The pool hash this log needs resolved to a name, if it is a string-pool event."""
    if contract.kind == "native" and contract.version == 2 and len(log.topics) >= 3:
        if log.topics[0] in (sig.STAKE_STRING_POOL, sig.UNSTAKE_REQUEST_STRING_POOL):
            return log.topics[2]
    return None

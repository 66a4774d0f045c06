"""What the EVM and TRON sources share: a malformed node answer as a retryable error, and string pools to name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from indexer.decode.calldata import names_by_hash, pool_names_in_calldata
from indexer.decode.logs import ContractSpec, RpcLog, needs_pool_name
from indexer.errors import RetryableError

T = TypeVar("T")


def checked(parse: Callable[[Any], T], value: Any) -> T:
    """`parse(value)`; its ValueError (a malformed node answer) raised as a RetryableError."""
    try:
        return parse(value)
    except ValueError as exc:
        raise RetryableError(str(exc)) from exc


def unnamed_pools(
    logs: Iterable[RpcLog], contracts: Mapping[str, ContractSpec], known: Mapping[str, str]
) -> dict[str, set[str]]:
    """Per transaction hash: the contracts whose `string indexed` pool logs in it carry a hash not in `known`.

    Those transactions' calls to those contracts (calldata, or call traces) can name the pools.
    Hashes and addresses are lower-case; every log comes from one of `contracts` (keyed lower-case).
    """
    wanted: dict[str, set[str]] = {}
    for log in logs:
        address = log["address"].lower()
        pool_hash = needs_pool_name(log, contracts[address])
        if pool_hash is not None and pool_hash not in known:
            wanted.setdefault(str(log.get("transactionHash", "")).lower(), set()).add(address)
    return wanted


def pool_names_in(calldata: Any) -> dict[str, str]:
    """keccak256(name) -> name of the string pools one call's calldata names ({} for any other call)."""
    return names_by_hash(pool_names_in_calldata(calldata))

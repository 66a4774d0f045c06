"""Recover `string indexed` pool names from transaction calldata and call traces.

A v2 native contract logs keccak256(pool) instead of the pool name; the name is
in the calldata of the call that reached the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_hash.auto import keccak

from indexer.decode import signatures as sig

_ARGUMENT_TYPES = {
    sig.STAKE_STRING: ("string",),
    sig.UNSTAKE_STRING: ("string", "uint256"),
    sig.UNSTAKE_MULTIPLE_STRING: ("string[]", "uint256[]"),
}


def pool_hash(name: str) -> str:
    """keccak256 of a pool name, as a `string indexed` topic holds it."""
    return "0x" + keccak(name.encode()).hex()


def pool_names_in_calldata(calldata: str) -> list[str]:
    """The pool names passed in one call to stake/unstake/unstakeMultiple (string pools); [] otherwise."""
    if not isinstance(calldata, str) or len(calldata) < 10:
        return []
    types = _ARGUMENT_TYPES.get(calldata[:10].lower())
    if types is None:
        return []
    from eth_abi import decode as abi_decode  # here: eth_abi's import costs a start-up 0.2 s, and few need it

    try:
        values = abi_decode(types, bytes.fromhex(calldata[10:]))
    except Exception:  # noqa: BLE001 - calldata from the chain is untrusted; undecodable means no names
        return []
    first = values[0]
    return list(first) if isinstance(first, (tuple, list)) else [first]


def calls_to(trace: Mapping[str, Any], contract: str) -> Iterable[Mapping[str, Any]]:
    """Every call frame of a `callTracer` trace (depth first) whose target is `contract`."""
    stack = [trace]
    while stack:
        frame = stack.pop()
        if str(frame.get("to", "")).lower() == contract:
            yield frame
        stack.extend(reversed(frame.get("calls") or ()))


def names_by_hash(names: Iterable[str]) -> dict[str, str]:
    """Map keccak256(name) -> name."""
    return {pool_hash(name): name for name in names}

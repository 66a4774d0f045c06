"""ABI and bytecode of the project's contracts, compiled by `node contracts/build.mjs`."""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def _load() -> dict[str, dict[str, Any]]:
    """Parse the packaged artifacts.json once."""
    text = resources.files("indexer.localchain").joinpath("artifacts.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def names() -> list[str]:
    """Names of the compiled contracts."""
    return sorted(_load())


def _get(name: str) -> dict[str, Any]:
    """The artifact of one contract, or KeyError naming the known ones."""
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"no artifact {name!r}; known: {', '.join(names())}") from None


def abi(name: str) -> list[dict[str, Any]]:
    """The contract's ABI (a fresh copy)."""
    return copy.deepcopy(_get(name)["abi"])


def bytecode(name: str) -> str:
    """The contract's creation bytecode, 0x-prefixed hex."""
    return str(_get(name)["bytecode"])

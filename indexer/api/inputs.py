"""The API's inputs, checked before anything is read: epoch numbers, addresses, `limit` and `before` (pure).

Anything that is not exactly one of these shapes (a sign, a letter, a quote, a semicolon, an
unknown query parameter) is an ApiError 400 naming what was wrong; nothing malformed reaches a query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from indexer.api.errors import ApiError
from indexer.config import tron_address

MAX_EPOCH = 2**63 - 1  # Postgres bigint
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_NUMBER = re.compile(r"[0-9]{1,19}")
_EVM = re.compile(r"0x[0-9a-fA-F]{40}")
EVM_PATTERN = "^0x[0-9a-fA-F]{40}$"
TRON_PATTERN = "^T[1-9A-HJ-NP-Za-km-z]{33}$"


def shown(text: str) -> str:
    """A client's input quoted for an error message (cut short)."""
    return repr(text if len(text) <= 64 else text[:64] + "...")


def number(name: str, text: str, maximum: int = MAX_EPOCH) -> int:
    """A non-negative integer written in decimal digits, at most `maximum`."""
    if text.startswith("-") and _NUMBER.fullmatch(text[1:]):
        raise ApiError(400, f"{name} must not be negative, got {shown(text)}")
    if not _NUMBER.fullmatch(text) or int(text) > maximum:
        raise ApiError(400, f"{name} must be an integer from 0 to {maximum}, got {shown(text)}")
    return int(text)


def epoch(text: str) -> int:
    return number("epoch", text)


def address(text: str) -> str:
    """An EVM address (answered lower-case) or a TRON base58check address (as is)."""
    if _EVM.fullmatch(text):
        return text.lower()
    if text.startswith("T"):
        try:
            canonical = tron_address(text)
        except ValueError as exc:
            raise ApiError(400, f"malformed TRON address {shown(text)}: {exc}") from None
        if canonical == text:
            return canonical
    raise ApiError(400, f"malformed address {shown(text)}: expected 0x and 40 hex digits, or a TRON T... address")


def query(params: Mapping[str, str], allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """The query parameters, each at most once and each one of `allowed`."""
    found: dict[str, str] = {}
    for key, value in params.items():
        if key not in allowed:
            expected = f"expected only {', '.join(allowed)}" if allowed else "this endpoint takes none"
            raise ApiError(400, f"unknown query parameter {shown(key)}: {expected}")
        if key in found:
            raise ApiError(400, f"query parameter {key} given more than once")
        found[key] = value
    return found


def page(params: Mapping[str, str]) -> tuple[int, int | None]:
    """(limit, before) of `GET /v1/epochs`: limit 1..100 (default 20), before an epoch number or None."""
    given = query(params, ("limit", "before"))
    limit = DEFAULT_LIMIT
    if "limit" in given:
        text = given["limit"]
        if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}, got {shown(text)}")
        limit = int(text)
    before = number("before", given["before"]) if "before" in given else None
    return limit, before

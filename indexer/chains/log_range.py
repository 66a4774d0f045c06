"""How many blocks to ask `eth_getLogs` for next (pure).

The range grows while answers are small and shrinks when the node refuses a
range as too large, learning the node's ceiling from its error message when
the message names one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# Messages providers use to refuse a log range as too large (lower-cased substrings).
_TOO_LARGE = (
    "query returned more than",  # geth, infura
    "log response size exceeded",  # alchemy
    "response size exceeded",
    "response is too big",
    "response too large",
    "too many results",
    "exceed maximum block range",  # bsc, public nodes
    "exceeds max block range",
    "exceeded maximum block range",
    "block range is too wide",  # ankr
    "block range too large",
    "block range limit exceeded",
    "max block range",
    "is limited to a",  # quicknode: "eth_getLogs is limited to a 10,000 range"
    "range too large",
    "range limit exceeded",
    "logs matched by query exceeds",
    "query timeout exceeded",
    "request timed out",
    "context deadline exceeded",
    "timeout",
)
_SUGGESTED_RANGE = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]")
_NAMED_LIMIT = re.compile(r"(?:range|limited to a|maximum block range:?|max block range:?)\s*(?:of\s*)?([0-9][0-9,_]*)")


def is_range_too_large(message: str) -> bool:
    """Whether a node's error message refuses a log range for its size."""
    text = message.lower()
    return any(pattern in text for pattern in _TOO_LARGE)


def suggested_size(message: str, from_block: int) -> int | None:
    """The range size a node suggests for this request (`[0x.., 0x..]` in Infura/Alchemy messages)."""
    match = _SUGGESTED_RANGE.search(message.lower())
    if match:
        start, end = int(match.group(1), 16), int(match.group(2), 16)
        if end >= start == from_block:
            return end - start + 1
    return None


def named_limit(message: str) -> int | None:
    """The largest range a node says it serves ("limited to a 10,000 range", "maximum block range: 5000")."""
    match = _NAMED_LIMIT.search(message.lower())
    if match:
        value = int(match.group(1).replace(",", "").replace("_", ""))
        return value if value > 0 else None
    return None


@dataclass(frozen=True, slots=True)
class LogRange:
    """The adaptive range: `size` for the next request, never above `ceiling`."""

    size: int
    ceiling: int
    target_logs: int

    def grown(self, logs: int) -> LogRange:
        """After an answer of `logs` logs: scale toward the target (x4 when empty, else at most x2 up, /8 down)."""
        if self.target_logs // 2 <= logs <= self.target_logs * 2:
            return self
        factor = 4.0 if logs == 0 else min(max(self.target_logs / logs, 1 / 8), 2.0)
        return replace(self, size=max(1, min(int(self.size * factor), self.ceiling)))

    def refused(self, message: str, from_block: int) -> LogRange:
        """After the node refused the range as too large (or timed out on it)."""
        limit = named_limit(message)
        ceiling = min(self.ceiling, limit) if limit and limit < self.size else self.ceiling
        suggestion = suggested_size(message, from_block)
        size = suggestion if suggestion is not None and suggestion < self.size else self.size // 2
        return replace(self, size=max(1, min(size, ceiling)), ceiling=ceiling)

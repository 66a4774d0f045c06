"""Backfill progress on a terminal: one line per chain with blocks/s, events/s and the ETA."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(chain: str, first: int, block: int, target: int, events: int, elapsed: float) -> str:
    """`chain: block B/T (P%)  R blocks/s  E events/s  ETA D` for blocks `first..target`, `block` reached (pure)."""
    done = max(block - first + 1, 0)
    total = max(target - first + 1, 1)
    elapsed = max(elapsed, 1e-9)
    blocks_rate = done / elapsed
    eta = (target - block) / blocks_rate if blocks_rate > 0 else float("inf")
    eta_text = "-" if eta == float("inf") else _duration(eta)
    return (f"{chain}: block {block:,}/{target:,} ({100 * done / total:.1f}%)  {blocks_rate:,.0f} blocks/s  "
            f"{events / elapsed:,.0f} events/s  ETA {eta_text}")  # fmt: skip


@dataclass
class Progress:
    """Prints progress lines for one catch-up when the stream is a terminal (silent otherwise)."""

    chain: str
    first: int
    target: int
    stream: TextIO = sys.stdout
    events: int = 0

    @property
    def enabled(self) -> bool:
        return self.stream.isatty() and self.target - self.first > 0

    def update(self, block: int, new_events: int, elapsed: float) -> None:
        self.events += new_events
        if self.enabled:
            end = "\n" if block >= self.target else ""
            self.stream.write(
                "\r" + progress_line(self.chain, self.first, block, self.target, self.events, elapsed) + end
            )
            self.stream.flush()

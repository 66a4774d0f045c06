"""Epoch windows: epoch N covers [genesis + N*L, genesis + (N+1)*L) in unix seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EpochSchedule:
    """Fixed epochs of `length` seconds from `genesis` (unix seconds, UTC)."""

    genesis: int
    length: int

    def __post_init__(self) -> None:
        if self.length <= 0:
            raise ValueError(f"epoch length must be positive, got {self.length}")

    def epoch_of(self, ts: int) -> int:
        """The epoch holding unix time `ts`; a time exactly on a boundary starts the later epoch."""
        if ts < self.genesis:
            raise ValueError(f"time {ts} is before the epoch genesis {self.genesis}")
        return (ts - self.genesis) // self.length

    def epoch_bounds(self, n: int) -> tuple[int, int]:
        """The half-open window [start, end) of epoch `n`."""
        if n < 0:
            raise ValueError(f"epoch numbers start at 0, got {n}")
        start = self.genesis + n * self.length
        return start, start + self.length

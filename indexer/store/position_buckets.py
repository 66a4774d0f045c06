"""Staker positions as bucket rows: a pool's positions split by a hash of the staker, a row of arrays each (pure).

A pro rata (SPEC 4) changes nearly every position of its pool, and writing a row per
position made the projector's writes its slowest part. `position_buckets` keeps a row per
(validator, asset, bucket) holding the bucket's stakers and amounts as arrays instead.
The bucket of a staker is the first `bits` bits of the MD5 of its UTF-8 text, where `bits`
grows with the pool (`position_bits`: about 8 to 16 stakers a row), so that a pool of
100,000 stakers changing one position rewrites a row of a dozen, not of hundreds. The
SQL functions `position_bits` and `position_bucket` compute the same numbers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from indexer.projection import ProjectionState

PER_ROW = 16  # stakers a bucket row holds at most on average: a pool gets the fewest bits that keep it so
MAX_BITS = 16
_NONE: Mapping = MappingProxyType({})

_HASHES: dict[str, int] = {}  # a staker's 16-bit hash; forgotten when it reaches _REMEMBERED
_REMEMBERED = 1 << 20


def position_bits(size: int) -> int:
    """How many bits of the stakers' hash split a pool of `size` positions into rows (0: one row)."""
    return min(MAX_BITS, ((size - 1) // PER_ROW).bit_length()) if size > PER_ROW else 0


def staker_hash(staker: str) -> int:
    """The first 16 bits of the MD5 of the staker's UTF-8 text."""
    found = _HASHES.get(staker)
    if found is None:
        if len(_HASHES) >= _REMEMBERED:
            _HASHES.clear()
        found = _HASHES[staker] = int.from_bytes(hashlib.md5(staker.encode(), usedforsecurity=False).digest()[:2])
    return found


def position_bucket(staker: str, bits: int) -> int:
    """The row of its pool a staker's position is kept in, when the pool is split by `bits` bits."""
    return staker_hash(staker) >> (MAX_BITS - bits)


_PLAIN_ELEMENT = re.compile(r'[^{}",\\\s]+')  # an array element needing no quotes (unless it reads NULL)


def array_literal(values: Sequence[str]) -> str:
    """A text[] in Postgres's array input syntax: an element double-quoted where it must be (empty, NULL, or
    holding a brace, quote, comma, backslash or white space)."""
    joined = ",".join(values)
    if joined.replace(",", "").isalnum() and joined.count(",") == len(values) - 1 and all(values):
        if "null" not in joined.lower():  # letters and digits alone (addresses): no element needs quotes
            return "{" + joined + "}"
    return "{" + ",".join(map(_array_element, values)) + "}"


def _array_element(value: str) -> str:
    if _PLAIN_ELEMENT.fullmatch(value) and value.lower() != "null":
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


Buckets = dict[int, tuple[list[str], str]]  # bucket -> (its stakers in code point order, their text[] literal)


def _bucketed(stakers: Iterable[str], bits: int) -> dict[int, list[str]]:
    """Stakers by bucket, each bucket's in code point order."""
    buckets: dict[int, list[str]] = {}
    shift, known = MAX_BITS - bits, _HASHES.get
    for staker in stakers:
        found = known(staker)
        buckets.setdefault((staker_hash(staker) if found is None else found) >> shift, []).append(staker)
    for held in buckets.values():
        held.sort()
    return buckets


_POOLS_REMEMBERED = 1 << 14
_POOLS: dict[tuple[str, str], tuple[Mapping[str, int], int, Buckets]] = {}  # key -> (the pool, its bits, rows)


def pool_buckets(
    key: tuple[str, str], pool: Mapping[str, int], since: tuple[Mapping[str, int], Iterable[str]] | None = None
) -> Buckets:
    """The pool's stakers by bucket, with their literals; remembered for the last pool of each key (states are
    immutable: the same mapping, the same rows). `since` = (the pool before, the stakers whose positions changed
    since): when that pool is the one remembered, only the buckets of stakers who came or went are done again
    (a pro rata changes every amount of a pool and seldom who is in it)."""
    found = _POOLS.get(key)
    if found is not None and found[0] is pool:
        return found[2]
    bits = position_bits(len(pool))
    moved = None
    if found is not None and since is not None and found[0] is since[0] and found[1] == bits:
        old = since[0]
        moved = [staker for staker in since[1] if (staker in old) != (staker in pool)]
    if moved is None or 4 * len(moved) > len(pool):
        buckets = {bucket: (held, array_literal(held)) for bucket, held in _bucketed(pool, bits).items()}
    else:
        buckets = dict(found[2]) if moved else found[2]  # type: ignore[index]
        for bucket, those in _bucketed(moved, bits).items():
            held = sorted(staker for staker in {*buckets.get(bucket, ([], ""))[0], *those} if staker in pool)
            if held:
                buckets[bucket] = (held, array_literal(held))
            else:
                del buckets[bucket]
    if len(_POOLS) >= _POOLS_REMEMBERED:
        _POOLS.clear()
    _POOLS[key] = (pool, bits, buckets)
    return buckets


def bucket_keys(state: ProjectionState) -> list[tuple[str, str, int]]:
    """Every bucket row's key (validator, asset, bucket) in `state`."""
    return [(*key, bucket) for key, pool in state.positions.items() for bucket in pool_buckets(key, pool)]


def bucket_lookup(state: ProjectionState) -> Callable[[tuple], tuple | None]:
    """A bucket row's values (bits, stakers, amounts) in `state` by its key, the arrays as literals (None: no row)."""

    def find(key: tuple) -> tuple | None:
        validator, asset, bucket = key
        pool = state.positions.get((validator, asset))
        found = pool_buckets((validator, asset), pool).get(bucket) if pool else None
        return None if found is None else (position_bits(len(pool)), found[1], _amounts(pool, found[0]))  # type: ignore[arg-type]

    return find


def bucket_count(state: ProjectionState) -> int:
    """About how many bucket rows `state` has."""
    return sum(min(len(pool), 1 << position_bits(len(pool))) for pool in state.positions.values())


def _amounts(pool: Mapping[str, int], stakers: list[str]) -> str:
    return "{" + ",".join(map(str, map(pool.__getitem__, stakers))) + "}"


def changed_rows(
    before: ProjectionState, after: ProjectionState, positions: Iterable[tuple[str, str, str]]
) -> list[tuple[tuple[str, str, int], tuple | None, str]]:
    """The bucket rows that changed positions (staker, validator, asset) rewrite: (key, values or None, op),
    op (i)nsert, (u)pdate or (d)elete. A pool whose bits changed with its size has all its rows redone, and so
    has a pool most of whose positions changed (a row whose stakers did not is written again as it was)."""
    by_pool: dict[tuple[str, str], list[str]] = {}
    for staker, validator, asset in positions:
        by_pool.setdefault((validator, asset), []).append(staker)
    rows = []
    for key, stakers in by_pool.items():
        old, pool = before.positions.get(key, _NONE), after.positions.get(key, _NONE)
        was = pool_buckets(key, old).keys() if old else set()  # remembered: then patched into the new ones
        now = pool_buckets(key, pool, since=(old, stakers)) if pool else {}
        bits = position_bits(len(pool))
        if bits == position_bits(len(old)) and 4 * len(stakers) < len(pool):
            changed = {position_bucket(staker, bits) for staker in stakers}
        else:  # the bits changed (every row is redone), or most of the pool did (a pro rata): every row
            changed = {*was, *now}
        for bucket in changed:
            found = now.get(bucket)
            if found is not None:
                rows.append(((*key, bucket), (bits, found[1], _amounts(pool, found[0])), "u" if bucket in was else "i"))
            elif bucket in was:
                rows.append(((*key, bucket), None, "d"))
    return rows

"""A pool's positions as arrays of 32-bit limbs, so that a pro rata over thousands of them runs in numpy (pure).

The largest-remainder pro rata of SPEC section 4 (`rounding.largest_remainder`) touches every
position of a pool; on Python integers that is about a millisecond per 2,000 positions, and a
workload where 1% of unstakes go beyond the holder's own position makes over a thousand of them
per 100,000 events. Here the same exact arithmetic runs on whole arrays: every amount below
2^96 (`LIMIT`; a pool total at or above 2^95 is not vectorized, see `fits`) is three 32-bit limbs
held in uint64, so that a limb times a limb never overflows. No floating point decides anything:
floats only sort candidates, and remainders equal as floats are ranked exactly.

Written by hand because no library from the registries does exact vectorized integer division and
remainder ranking (python-flint's `fmpz_poly` divides, but reading 2,000 coefficients back costs as
much as the Python arithmetic; numpy has no integers wider than 64 bits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

LIMBS = 3  # amounts below 2^96
LIMIT = 1 << 95  # a pool is kept as limbs only while its total stays below this (values and sums below 2^96)
_MASK = np.uint64(0xFFFFFFFF)
_BASE = np.uint64(1 << 32)
_SHIFT = np.uint64(32)


def fits(total: int) -> bool:
    """Whether a pool holding `total` in all can be kept as limbs."""
    return 0 <= total < LIMIT


class PoolVector:
    """One pool's positions (staker -> amount) in limb arrays; zero amounts stay in place until `items`.

    `total` is the sum of the amounts, kept below `LIMIT`: `add` refuses (returns False) what would
    reach it, and the caller goes back to plain integers. Single positions written between two pro
    ratas wait in `written` as Python integers (a limb read or write costs microseconds, a thousand
    times over between two pro ratas) and go into the arrays together, before the next pro rata.
    """

    __slots__ = ("names", "index", "limbs", "size", "total", "written")

    def __init__(self, stakers: Mapping[str, int]) -> None:
        self.names = list(stakers)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.size = len(self.names)
        self.total = sum(stakers.values())
        if not fits(self.total) or any(amount < 0 for amount in stakers.values()):
            raise ValueError(f"a pool totalling {self.total} cannot be kept as {LIMBS} limbs")
        capacity = max(16, 2 * self.size)
        self.limbs = np.zeros((LIMBS, capacity), dtype=np.uint64)
        _store(self.limbs, slice(0, self.size), list(stakers.values()))
        self.written: dict[int, int] = {}  # index -> amount, not in the arrays yet

    def get(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            return 0
        value = self.written.get(i)
        return self._value(i) if value is None else value

    def add(self, name: str, delta: int) -> bool:
        """Add `delta` (negative: subtract) to one position; False, changing nothing, if the total would
        reach `LIMIT`. The caller keeps positions from going below zero."""
        if not fits(self.total + delta):
            return False
        i = self.index.get(name)
        if i is None:
            i, value = self._append(name), 0
        else:
            value = self.written.get(i)
            if value is None:
                value = self._value(i)
        self.written[i] = value + delta
        self.total += delta
        return True

    def take_pro_rata(self, amount: int) -> None:
        """Take `amount` from every position in proportion to its size, exactly as `rounding.largest_remainder`
        shares it (floors, then one unit each to the largest remainders, equal ones to the lower name)."""
        if not 0 <= amount <= self.total:
            raise ValueError(f"cannot take {amount} from holdings totalling {self.total}")
        if amount == 0:
            return
        self._settle()
        self._compact()
        n = self.size
        held = [self.limbs[k, :n] for k in range(LIMBS)]
        taken = pro_rata_limbs(held, amount, self.total, self.names)
        self.limbs[:, :n] = _minus(held, taken)  # never below zero: each gives at most its holding
        self.total -= amount

    def items(self) -> Iterator[tuple[str, int]]:
        """Every non-zero position as (name, amount)."""
        self._settle()
        values = self._values()
        return ((name, value) for name, value in zip(self.names, values, strict=True) if value)

    def _compact(self) -> None:
        """Drop the positions gone to zero once they are half the arrays: a long batch (a reproject) with
        stakers coming and going would otherwise share every pro rata over every staker it ever saw."""
        n = self.size
        live = np.flatnonzero(self.limbs[0, :n] | self.limbs[1, :n] | self.limbs[2, :n])
        if 2 * len(live) >= n:
            return
        self.names = [self.names[i] for i in live.tolist()]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.size = len(self.names)
        self.limbs[:, : self.size] = self.limbs[:, live]
        self.limbs[:, self.size : n] = 0

    def _settle(self) -> None:
        """Bring the positions written one by one into the arrays."""
        if self.written:
            where = np.fromiter(self.written.keys(), dtype=np.intp, count=len(self.written))
            _store(self.limbs, where, list(self.written.values()))
            self.written.clear()

    def _value(self, i: int) -> int:
        low, middle, high = self.limbs[:, i].tolist()
        return low | middle << 32 | high << 64

    def _values(self) -> list[int]:
        n = self.size
        low, middle, high = (self.limbs[k, :n].tolist() for k in range(LIMBS))
        return [lo | mid << 32 | hi << 64 for lo, mid, hi in zip(low, middle, high, strict=True)]

    def _append(self, name: str) -> int:
        if self.size == self.limbs.shape[1]:
            grown = np.zeros((LIMBS, 2 * self.size), dtype=np.uint64)
            grown[:, : self.size] = self.limbs
            self.limbs = grown
        i = self.size
        self.names.append(name)
        self.index[name] = i
        self.size += 1
        return i


def pro_rata_limbs(held: list[np.ndarray], amount: int, total: int, names: list[str]) -> list[np.ndarray]:
    """What each holding gives when `amount` is taken pro rata, as limbs: floor(amount x held / total), plus one
    unit to each of the largest remainders (amount - the floors of them), equal remainders to the lower name.

    `held` is LIMBS arrays of 32-bit limbs, `total` their sum (below `LIMIT`), 0 <= amount <= total.
    The floors come from a reciprocal: m = floor(amount x 2^96 / total) gives floor(held x m / 2^96), which
    is the floor or one below it (held < 2^96); the exact remainder amount x held - floor x total (below
    2 x total, so four limbs hold it) tells which, and ranks.
    """
    m = (amount << 96) // total  # at most 2^96 (amount == total): four limbs
    quotient = _times(held, _limbs_of(m, LIMBS + 1), 2 * LIMBS + 1)[LIMBS : 2 * LIMBS]
    products = _times(held, _limbs_of(amount, LIMBS), LIMBS + 1)
    floors_times_total = _times(quotient, _limbs_of(total, LIMBS), LIMBS + 1)
    remainder = _minus(products, floors_times_total)
    t = _limbs_of(total, LIMBS + 1)
    for i in np.flatnonzero(_at_least(remainder, t)).tolist():  # the floor was one below: rare
        for k, limb in enumerate(_limbs_of(_int_at(remainder, i) - total, LIMBS + 1)):
            remainder[k][i] = limb
        for k, limb in enumerate(_limbs_of(_int_at(quotient, i) + 1, LIMBS)):
            quotient[k][i] = limb
    sums = [int(limb.sum()) for limb in remainder]  # each below n x 2^32: exact in uint64
    left, rest = divmod(sum(s << (32 * k) for k, s in enumerate(sums)), total)
    if rest:
        raise ArithmeticError(f"remainders of a pro rata of {amount} over {total} do not sum to a multiple of it")
    if left:
        carry = _largest(remainder, left, names)
        for k in range(LIMBS):  # floor + 1 never exceeds the holding, so the carry never leaves the top limb
            total_k = quotient[k] + carry
            quotient[k] = total_k & _MASK
            carry = total_k >> _SHIFT
    return quotient


def _largest(remainder: list[np.ndarray], count: int, names: list[str]) -> np.ndarray:
    """A 0/1 array marking the `count` largest remainders, equal ones to the lower name first.

    Floats (monotone in the exact value: the high 64 bits are exact, the low ones rounded) find the
    cut; positions whose float equals the cut's are ranked on their exact remainders and names.
    """
    high = (remainder[3] << _SHIFT | remainder[2]).astype(np.float64) * 2.0**64
    approximate = high + (remainder[1] << _SHIFT | remainder[0]).astype(np.float64)
    n = approximate.shape[0]
    cut = np.partition(approximate, n - count)[n - count]  # the count-th largest
    bumped = (approximate > cut).astype(np.uint64)
    wanted = count - int(bumped.sum())
    at_cut = np.flatnonzero(approximate == cut).tolist()
    ranked = sorted(at_cut, key=lambda i: (-_int_at(remainder, i), names[i]))
    bumped[ranked[:wanted]] = 1
    return bumped


def _store(limbs: np.ndarray, where: slice | np.ndarray, amounts: list[int]) -> None:
    """Write `amounts` (each below 2^96) as limbs into the columns `where`."""
    packed = b"".join([amount.to_bytes(4 * LIMBS, "little") for amount in amounts])
    limbs[:, where] = np.frombuffer(packed, dtype="<u4").reshape(len(amounts), LIMBS).T


def _limbs_of(value: int, count: int) -> list[int]:
    return [(value >> (32 * k)) & 0xFFFFFFFF for k in range(count)]


def _int_at(limbs: list[np.ndarray] | np.ndarray, i: int) -> int:
    return sum(int(limb[i]) << (32 * k) for k, limb in enumerate(limbs))


def _times(vector: list[np.ndarray], scalar: list[int], keep: int) -> list[np.ndarray]:
    """The low `keep` limbs of vector x scalar, carried (each limb below 2^32).

    Digit by digit of the scalar, every limb of the vector at once (one 2-D operation a step,
    not one a limb: at a few thousand positions the calls cost more than the arithmetic).
    """
    n, width = vector[0].shape[0], len(vector)
    columns = np.zeros((max(keep, width + len(scalar)) + 1, n), dtype=np.uint64)
    limbs = np.stack(vector)
    for j, digit in enumerate(scalar):
        if digit == 0 or j >= keep:
            continue
        product = limbs * np.uint64(digit)  # each below 2^64
        columns[j : j + width] += product & _MASK  # a column gathers at most 2 x LIMBS + 2 terms below 2^32
        columns[j + 1 : j + 1 + width] += product >> _SHIFT
    for k in range(keep):
        columns[k + 1] += columns[k] >> _SHIFT
        columns[k] &= _MASK
    return list(columns[:keep])


def _minus(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    """a - b modulo 2^(32 x len(a)), limb by limb."""
    borrow = np.zeros(a[0].shape[0], dtype=np.uint64)
    out = []
    for x, y in zip(a, b, strict=True):
        difference = x + _BASE - y - borrow
        out.append(difference & _MASK)
        borrow = np.uint64(1) - (difference >> _SHIFT)
    return out


def _at_least(a: list[np.ndarray], b: list[int]) -> np.ndarray:
    """Where the limbs `a` hold at least the number whose limbs are `b`."""
    greater = np.zeros(a[0].shape[0], dtype=bool)
    equal = np.ones(a[0].shape[0], dtype=bool)
    for x, y in zip(reversed(a), reversed(b), strict=True):
        digit = np.uint64(y)
        greater |= equal & (x > digit)
        equal &= x == digit
    return greater | equal

"""Positions as bucket rows (`store/position_buckets.py`): the hash, the bits, the literals and the changed rows."""

from __future__ import annotations

import hashlib
from types import MappingProxyType as Frozen

from hypothesis import example, given
from hypothesis import strategies as st

from indexer.projection import EMPTY, ProjectionState
from indexer.store.position_buckets import (
    array_literal,
    bucket_keys,
    bucket_lookup,
    changed_rows,
    pool_buckets,
    position_bits,
    position_bucket,
    staker_hash,
)

NAMES = st.sampled_from([f"0x{i:x}" for i in range(60)] + ["a b", "", '"q"', "NULL", "é"])
POOLS = st.sampled_from([("v1", "ETH"), ("v\t2", "ETH"), ("v1", "TKN")])
HOLDINGS = st.dictionaries(POOLS, st.dictionaries(NAMES, st.integers(1, 2**200), min_size=1, max_size=40), max_size=3)


def state_of(holdings: dict) -> ProjectionState:
    return ProjectionState(positions=Frozen({pool: Frozen(held) for pool, held in holdings.items()}))


def rows_of(state: ProjectionState) -> dict[tuple, tuple]:
    find = bucket_lookup(state)
    return {key: find(key) for key in bucket_keys(state)}


def test_a_stakers_hash_is_the_first_16_bits_of_its_md5():
    assert staker_hash("") == 0xD41D  # md5("") = d41d8cd9...
    assert staker_hash("abc") == 0x9001  # md5("abc") = 90015098...
    assert staker_hash("é") == int(hashlib.md5("é".encode()).hexdigest()[:4], 16)  # its UTF-8, two bytes
    assert [position_bucket("abc", bits) for bits in (0, 1, 4, 16)] == [0, 1, 0x9, 0x9001]


def test_a_pool_gets_the_fewest_bits_that_keep_its_rows_at_16_stakers_on_average():
    assert [position_bits(n) for n in (0, 1, 16, 17, 32, 33, 64, 65, 2_000, 100_000)] == [0, 0, 0, 1, 1, 2, 2, 3, 7, 13]
    assert position_bits(10**9) == 16
    for n in range(17, 5_000):
        bits = position_bits(n)
        assert n <= 16 << bits and (bits == 0 or n > 16 << (bits - 1))


@given(before=HOLDINGS, after=HOLDINGS)
def test_the_changed_rows_turn_the_rows_before_into_the_rows_after(before, after):
    """Whatever changed (stakers coming, going, amounts, pools growing past a bits boundary): applying the changed
    rows to the bucket rows of the state before gives exactly those of the state after."""
    old, new = state_of(before), state_of(after)
    changed = {(s, *pool) for pool in before.keys() | after.keys()
               for s in before.get(pool, {}).keys() | after.get(pool, {}).keys()
               if before.get(pool, {}).get(s) != after.get(pool, {}).get(s)}  # fmt: skip
    rows = rows_of(old)
    for key, values, op in changed_rows(old, new, changed):
        assert (op == "i") == (key not in rows) and (op == "d") == (values is None)
        if values is None:
            del rows[key]
        else:
            rows[key] = values
    assert rows == rows_of(new)


def test_one_position_changed_in_a_large_pool_rewrites_one_small_row():
    pool = {f"0x{i:040x}": i + 1 for i in range(100_000)}
    old = state_of({("v1", "ETH"): pool})
    new = state_of({("v1", "ETH"): {**pool, "0x" + "0" * 39 + "7": 99}})
    [(key, (bits, stakers, amounts), op)] = changed_rows(old, new, [("0x" + "0" * 39 + "7", "v1", "ETH")])
    held, amounts = stakers.strip("{}").split(","), amounts.strip("{}").split(",")
    assert op == "u" and bits == 13 and 2 <= len(held) == len(amounts) <= 40  # about 12 of the 100,000
    assert amounts[held.index("0x" + "0" * 39 + "7")] == "99"


def test_a_pro_rata_over_a_pool_rewrites_each_of_its_rows_once():
    pool = {f"0x{i:040x}": 10**18 + i for i in range(2_000)}
    old, new = state_of({("v1", "ETH"): pool}), state_of({("v1", "ETH"): {s: n - 1 for s, n in pool.items()}})
    rows = changed_rows(old, new, [(s, "v1", "ETH") for s in pool])
    assert len(rows) == len({key for key, _, _ in rows}) == len(rows_of(old)) <= 128


@given(st.lists(st.lists(st.sampled_from(["a", "0x1", ",", "{", "}", '"', "\\", " ", "\t", "NULL", "nUlL", "é"]),
                         max_size=3).map("".join), max_size=6))  # fmt: skip
@example(["a,b"])
@example(["0x1", "a b", "", "null", '{"}'])
def test_an_array_literal_quotes_exactly_the_elements_that_need_it(values):
    literal = array_literal(values)
    assert literal.startswith("{") and literal.endswith("}")
    plain = [v for v in values if v and v.lower() != "null" and not set(v) & set('{}",\\ \t\n\r')]
    if len(plain) == len(values):
        assert literal == "{" + ",".join(values) + "}"
    for value in set(values) - set(plain):  # double-quoted, its quotes and backslashes escaped
        assert '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' in literal


@given(st.lists(st.dictionaries(NAMES, st.integers(1, 9)), min_size=1, max_size=8), st.booleans())
def test_a_pools_buckets_remembered_across_changes_are_those_made_afresh(pools, hinted):
    """One pool, its stakers coming and going: what `pool_buckets` remembers and patches (told what changed since
    the pool before, or not) equals a fresh grouping."""
    key, before = ("validator-remembered", "ETH"), None
    for held in pools:
        pool = Frozen(held)
        fresh: dict[int, list[str]] = {}
        for staker in sorted(pool):
            fresh.setdefault(position_bucket(staker, position_bits(len(pool))), []).append(staker)
        since = None
        if hinted and before is not None:
            since = (before, [s for s in before.keys() | pool.keys() if before.get(s) != pool.get(s)])
        assert pool_buckets(key, pool, since) == {bucket: (held, array_literal(held)) for bucket, held in fresh.items()}
        assert pool_buckets(key, pool) is pool_buckets(key, pool)  # the same pool: remembered
        before = pool


def test_an_empty_state_has_no_rows():
    assert bucket_keys(EMPTY) == [] and changed_rows(EMPTY, EMPTY, []) == []

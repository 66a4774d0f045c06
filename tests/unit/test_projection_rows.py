"""Projection rows as COPY text: the fast paths give exactly what the plain, field-by-field way gives."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType as Frozen

from hypothesis import example, given
from hypothesis import strategies as st

from indexer.projection import EMPTY, Changes
from indexer.store.projections import (
    TABLES,
    _pool_buckets,
    array_literal,
    changed_lines,
    copy_field,
    copy_line,
    position_bucket,
)

BUCKETS = next(t for t in TABLES if t.name == "position_buckets")
TEXT = st.lists(st.sampled_from(["a", "0x1", "\t", "\n", "\r", "\\", "N", "None", " ", "é"]), max_size=4).map("".join)
FIELD = st.one_of(st.none(), TEXT, st.integers(0, 2**256 - 1))


@given(st.lists(FIELD, min_size=1, max_size=6))
def test_a_copy_line_is_its_fields_escaped_one_by_one(row):
    assert copy_line(tuple(row)) == "\t".join(map(copy_field, row))


def test_copy_text_escapes_what_copy_reads_specially():
    assert copy_line(("a\tb", None, "back\\slash", 7)) == "a\\tb\t\\N\tback\\\\slash\t7"
    assert copy_line(("None", "\\N")) == "None\t\\\\N"  # the word None and a literal backslash-N are text


POOLS = st.tuples(st.sampled_from(["v1", "v\t2", "v\\3"]), st.sampled_from(["ETH", "TKN"]))
HOLDINGS = st.dictionaries(POOLS, st.dictionaries(TEXT, st.integers(1, 2**200), max_size=5), max_size=4)


@given(before=HOLDINGS, after=HOLDINGS, extra=st.lists(st.tuples(TEXT, POOLS), max_size=4))
def test_bucket_lines_pool_by_pool_match_the_plain_lookup(before, after, extra):
    """Changed positions: every one in either state, and some in neither (touched, back to nothing)."""
    old = dataclasses.replace(EMPTY, positions=Frozen({k: Frozen(v) for k, v in before.items()}))
    new = dataclasses.replace(EMPTY, positions=Frozen({k: Frozen(v) for k, v in after.items()}))
    keys = {(s, v, a) for (v, a), stakers in (*before.items(), *after.items()) for s in stakers}
    keys |= {(s, v, a) for s, (v, a) in extra}
    buckets = frozenset(BUCKETS.changed(Changes(positions=frozenset(keys))))
    plain = dataclasses.replace(BUCKETS, lines=None)
    fast = changed_lines(BUCKETS, old, new, buckets)
    assert sorted(fast) == sorted(changed_lines(plain, old, new, buckets))

    def filled(holdings):
        return {(v, a, position_bucket(s)) for (v, a), stakers in holdings.items() for s in stakers}

    was, now = filled(before), filled(after)
    expected = {key: "u" if key in was else "i" for key in now} | {key: "d" for key in was - now}
    assert sorted(line[-1] for line in fast) == sorted(expected[key] for key in buckets if key in expected)


ELEMENT = st.lists(st.sampled_from(["a", "0x1", ",", "{", "}", '"', "\\", " ", "\t", "NULL", "nUlL", "é"]), max_size=3)


@given(st.lists(ELEMENT.map("".join), max_size=6))
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


def test_a_staker_bucket_is_the_first_byte_of_its_md5():
    assert position_bucket("") == 0xD4  # md5("") = d41d8cd9...
    assert position_bucket("abc") == 0x90  # md5("abc") = 900150983cd24fb0...
    assert {position_bucket(f"0x{i:040x}") for i in range(4000)} == set(range(256))


@given(st.lists(st.dictionaries(st.sampled_from([f"0x{i:x}" for i in range(40)] + ["a b", ""]), st.integers(1, 9)),
                min_size=1, max_size=6))  # fmt: skip
def test_a_pools_buckets_remembered_across_changes_are_those_made_afresh(pools):
    """One pool, its stakers coming and going: what `_pool_buckets` remembers and patches equals a fresh grouping."""
    key = ("validator-remembered", "ETH")
    for pool in pools:
        fresh = {}
        for staker in sorted(pool):
            fresh.setdefault(position_bucket(staker), []).append(staker)
        assert _pool_buckets(key, pool) == {bucket: (held, array_literal(held)) for bucket, held in fresh.items()}

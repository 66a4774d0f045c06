"""Projection rows as COPY text: the fast paths give exactly what the plain, field-by-field way gives."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType as Frozen

from hypothesis import given
from hypothesis import strategies as st

from indexer.projection import EMPTY
from indexer.store.projections import TABLES, changed_lines, copy_field, copy_line

POSITIONS = next(t for t in TABLES if t.name == "positions")
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
def test_position_lines_pool_by_pool_match_the_plain_lookup(before, after, extra):
    """Changed keys: every position in either state, and some in neither (touched, back to nothing)."""
    old = dataclasses.replace(EMPTY, positions=Frozen({k: Frozen(v) for k, v in before.items()}))
    new = dataclasses.replace(EMPTY, positions=Frozen({k: Frozen(v) for k, v in after.items()}))
    keys = {(s, v, a) for (v, a), stakers in (*before.items(), *after.items()) for s in stakers}
    keys |= {(s, v, a) for s, (v, a) in extra}
    plain = dataclasses.replace(POSITIONS, lines=None)
    fast = changed_lines(POSITIONS, old, new, frozenset(keys))
    assert sorted(fast) == sorted(changed_lines(plain, old, new, frozenset(keys)))
    expected_ops = {
        (s, v, a): "u" if s in before.get((v, a), {}) else "i" for (v, a), stakers in after.items() for s in stakers
    }
    expected_ops |= {
        (s, v, a): "d" for (v, a), stakers in before.items() for s in stakers if s not in after.get((v, a), {})
    }
    assert sorted(line[-1] for line in fast) == sorted(expected_ops.values())

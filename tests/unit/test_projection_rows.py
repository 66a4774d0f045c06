"""Projection rows as COPY text: the fast paths give exactly what the plain, field-by-field way gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.store.projections import copy_field, copy_line

TEXT = st.lists(st.sampled_from(["a", "0x1", "\t", "\n", "\r", "\\", "N", "None", " ", "é"]), max_size=4).map("".join)
FIELD = st.one_of(st.none(), TEXT, st.integers(0, 2**256 - 1))


@given(st.lists(FIELD, min_size=1, max_size=6))
def test_a_copy_line_is_its_fields_escaped_one_by_one(row):
    assert copy_line(tuple(row)) == "\t".join(map(copy_field, row))


def test_copy_text_escapes_what_copy_reads_specially():
    assert copy_line(("a\tb", None, "back\\slash", 7)) == "a\\tb\t\\N\tback\\\\slash\t7"
    assert copy_line(("None", "\\N")) == "None\t\\\\N"  # the word None and a literal backslash-N are text

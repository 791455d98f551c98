"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st


def json_values(*, leaves: int = 10, width: int = 3, nul: bool = True) -> st.SearchStrategy[object]:
    """JSON values that orjson can encode (finite floats, 64-bit integers); strings without
    U+0000 when not ``nul`` (a NUL makes the server refuse the whole frame or body)."""
    alphabet = st.characters(
        blacklist_categories=("Cs",), blacklist_characters="" if nul else "\x00"
    )
    return st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(alphabet, max_size=20),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=width),
            st.dictionaries(st.text(alphabet, max_size=8), children, max_size=width),
        ),
        max_leaves=leaves,
    )

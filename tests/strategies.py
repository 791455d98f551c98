"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st


def json_values(*, leaves: int = 10, width: int = 3) -> st.SearchStrategy[object]:
    """JSON values that orjson can encode (finite floats, 64-bit integers)."""
    return st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=20),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=width),
            st.dictionaries(st.text(max_size=8), children, max_size=width),
        ),
        max_leaves=leaves,
    )

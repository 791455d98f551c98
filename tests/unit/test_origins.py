"""Which browser origins may use a bot (``allowed_origins``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.bots import origin_allowed

SHOP = ["https://shop.example.com", "http://localhost:3000", "https://*.example.org"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.example.com", True),
        ("https://SHOP.example.com", True),
        ("https://shop.example.com:443", True),
        ("https://shop.example.com/", True),
        ("http://shop.example.com", False),  # another scheme
        ("https://shop.example.com:8443", False),  # another port
        ("https://evil.example.com", False),
        ("https://shop.example.com.evil.net", False),
        ("http://localhost:3000", True),
        ("http://localhost", False),
        ("https://a.example.org", True),
        ("https://a.b.example.org", True),
        ("https://example.org", False),  # the wildcard is for subdomains
        ("https://badexample.org", False),
        ("null", False),  # sandboxed frames and file pages send "null"
        ("", False),
        ("javascript:alert(1)", False),
    ],
)
def test_origins_of_a_bot(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, SHOP) is allowed


@given(st.text(max_size=60))
def test_an_empty_list_or_a_star_allows_anything_and_nothing_crashes(origin: str) -> None:
    assert origin_allowed(origin, [])
    assert origin_allowed(origin, ["*"])
    assert origin_allowed(origin, SHOP) in (True, False)

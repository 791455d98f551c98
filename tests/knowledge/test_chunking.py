"""Tests for realtime.knowledge.chunking: markdown/HTML/plain-text passages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.knowledge.chunking import Chunk, chunk_document, document_title, slugify

MARKDOWN = """\
---
title: ignored front matter
---
# Returns Policy

We accept **returns** of *unworn* items, see [our form](https://example.com/form_(v2) "Form")
and ![the label](label.png). Use `return_label()` to print a label &amp; stick it on.

## Shipping & Delivery

Orders ship from Berlin.

### Express (24h)

- Express costs **€10**.
- [x] Tracking is included
  for every parcel.
1. Pay.
2. Wait.

```python
# install the SDK
def ship(order):
    return order.id  # not *emphasis*
```

| Zone | Days |
|------|-----:|
| EU   | 2    |

## Empty section

## Shipping & Delivery

Second section with the same heading <!-- hidden
comment --> visible.

Setext heading
--------------

Under setext.
"""


def by_title(chunks: list[Chunk]) -> dict[str, Chunk]:
    return {c.title: c for c in chunks}


def test_markdown_document_title() -> None:
    assert document_title(MARKDOWN, "markdown", "fallback") == "Returns Policy"
    assert document_title("Intro\n\nGuide\n=====\n\ntext", "markdown", "fb") == "Guide"
    assert document_title("## Only h2\ntext", "markdown", "fb") == "fb"
    assert document_title("```\n# not a title\n```\n", "markdown", "fb") == "fb"
    assert document_title("# The *Real* `Title` #\n", "markdown", "fb") == "The Real Title"
    assert document_title("# Title\n", "text", "fb") == "fb"


def test_markdown_sections_titles_and_anchors() -> None:
    chunks = chunk_document(MARKDOWN, "markdown", title="Returns Policy")
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    assert [(c.title, c.anchor) for c in chunks] == [
        ("Returns Policy", "returns-policy"),
        ("Returns Policy › Shipping & Delivery", "shipping--delivery"),
        ("Returns Policy › Express (24h)", "express-24h"),
        ("Returns Policy › Shipping & Delivery", "shipping--delivery-1"),
        ("Returns Policy › Setext heading", "setext-heading"),
    ]
    assert "ignored front matter" not in " ".join(c.text for c in chunks)


def test_markdown_inline_syntax_is_removed() -> None:
    intro = chunk_document(MARKDOWN, "markdown", title="Returns Policy")[0].text
    assert intro == (
        "We accept returns of unworn items, see our form and the label. "
        "Use return_label() to print a label & stick it on."
    )


def test_markdown_lists_code_and_tables() -> None:
    chunks = by_title(chunk_document(MARKDOWN, "markdown", title="Returns Policy"))
    express = chunks["Returns Policy › Express (24h)"].text
    assert express == (
        "Express costs €10.\nTracking is included for every parcel.\n1. Pay.\n2. Wait.\n\n"
        "# install the SDK\ndef ship(order):\n    return order.id  # not *emphasis*\n\n"
        "Zone | Days\nEU | 2"
    )
    for chunk in chunks.values():
        if chunk is not chunks["Returns Policy › Express (24h)"]:
            assert not set("#*`") & set(chunk.text)
    assert chunks["Returns Policy › Shipping & Delivery"].text == (
        "Second section with the same heading visible."
    )


def test_markdown_quotes_rules_and_reference_links() -> None:
    md = "> Quoted **text**\n> more\n\n***\n\nSee [docs][1] or <https://x.io>.\n\n[1]: https://d\n"
    chunks = chunk_document(md, "markdown", title="T")
    assert [c.text for c in chunks] == ["Quoted text more\n\nSee docs or https://x.io."]
    assert chunks[0].anchor == "" and chunks[0].title == "T"


def test_unclosed_fence_keeps_code() -> None:
    chunks = chunk_document("# T\n\n```\n## code line\n", "markdown", title="T")
    assert [c.text for c in chunks] == ["## code line"]


def test_slugify_like_github() -> None:
    assert slugify("Shipping & Delivery") == "shipping--delivery"
    assert slugify("What's new in v2.0?") == "whats-new-in-v20"
    assert slugify("Über_uns -- FAQ") == "über_uns----faq"


HTML = """<!doctype html>
<html><head><title>Help  Centre</title>
<style>p { color: red }</style><script>var s = "<h2>not a heading</h2>";</script></head>
<body>
<nav>Home</nav>
<h1>Welcome</h1>
<p>Fish &amp; chips&nbsp;are &lt;great&gt;.<br>Second line</p>
<h2 id="faq">FAQ <small>(updated)</small></h2>
<ul><li>One</li><li>Two <b>bold</b></li></ul>
<script>alert("x")</script><noscript>Enable JavaScript</noscript>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td><td>&euro;5</td></tr></table>
<pre>
  indented
    code
</pre>
<h3>Empty</h3>
<h3>Contact</h3><div>Mail us<div>today</div></div>
</body></html>"""


def test_html_title_and_sections() -> None:
    assert document_title(HTML, "html", "fb") == "Help Centre"
    assert document_title("<h2>x</h2><h1>First &amp; H1</h1>", "html", "fb") == "First & H1"
    assert document_title("<p>no heading</p>", "html", "fb") == "fb"
    chunks = chunk_document(HTML, "html", title="Help Centre")
    assert [(c.title, c.anchor, c.text) for c in chunks] == [
        ("Help Centre", "", "Home"),
        ("Help Centre › Welcome", "welcome", "Fish & chips are <great>.\nSecond line"),
        (
            "Help Centre › FAQ (updated)",
            "faq-updated",
            "One\nTwo bold\n\nPlan | Price\nPro | €5\n\nindented\n  code",
        ),
        ("Help Centre › Contact", "contact", "Mail us\n\ntoday"),
    ]
    text = " ".join(c.text for c in chunks)
    for dropped in ("color", "alert", "var s", "not a heading", "JavaScript"):
        assert dropped not in text


def test_html_unclosed_tags_do_not_swallow_text() -> None:
    chunks = chunk_document("<title>T<p>Body text<h2>Sub<p>More", "html", title="T")
    assert [(c.title, c.text) for c in chunks] == [("T", "Body text"), ("T › Sub", "More")]


def test_plain_text_paragraphs_grouped() -> None:
    text = "First paragraph.\nStill first.\n\n\n  Second   paragraph.  \n\n# not a heading"
    chunks = chunk_document(text, "text", title="Notes")
    assert chunks == [
        Chunk(
            0, "Notes", "", "First paragraph. Still first.\n\nSecond paragraph.\n\n# not a heading"
        )
    ]
    small = chunk_document(text, "text", title="Notes", max_chars=40, min_chars=0)
    assert [c.text for c in small] == [
        "First paragraph. Still first.",
        "Second paragraph.\n\n# not a heading",
    ]


def test_long_section_is_split_at_paragraphs_then_sentences() -> None:
    para = " ".join(f"Sentence number {i} talks about returns." for i in range(12))
    md = f"# Doc\n\n## Long\n\n{para}\n\nShort closing paragraph here.\n"
    chunks = chunk_document(md, "markdown", title="Doc", max_chars=200, min_chars=50)
    assert len(chunks) > 2
    assert {(c.title, c.anchor) for c in chunks} == {("Doc › Long", "long")}
    for c in chunks:
        assert len(c.text) <= 200
        assert c.text.endswith(".")  # split after sentences, never mid-word
    assert " ".join(" ".join(c.text.split()) for c in chunks) == " ".join(
        f"{para} Short closing paragraph here.".split()
    )


def test_runt_tail_is_rebalanced() -> None:
    paras = ["a" * 100, "b" * 60, "c" * 30, "d" * 15]
    content = "\n\n".join(paras)
    no_min = chunk_document(content, "text", title="T", max_chars=200, min_chars=0)
    assert [len(c.text) for c in no_min] == [194, 15]
    chunks = chunk_document(content, "text", title="T", max_chars=200, min_chars=50)
    assert [c.text for c in chunks] == [paras[0], "\n\n".join(paras[1:])]


def test_overlong_word_stands_alone() -> None:
    word = "x" * 50
    chunks = chunk_document(f"short words {word} end", "text", title="T", max_chars=20)
    assert [c.text for c in chunks] == ["short words", word, "end"]


def test_empty_documents_and_bad_kind() -> None:
    assert chunk_document("", "text", title="T") == []
    assert chunk_document("# Only\n\n## Headings\n", "markdown", title="Only") == []
    assert chunk_document("<html><script>x</script></html>", "html", title="T") == []
    with pytest.raises(ValueError):
        chunk_document("x", "pdf", title="T")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(" \n\n\t.!?,'\"#*`-_[]()<>&;|~="),
        st.characters(codec="utf-8"),
    ),
    max_size=600,
)
_sizes = st.tuples(st.integers(10, 300), st.integers(0, 100))


@settings(max_examples=150)
@given(_text, _sizes)
def test_plain_text_never_loses_words(content: str, sizes: tuple[int, int]) -> None:
    max_chars, min_chars = sizes
    chunks = chunk_document(content, "text", title="T", max_chars=max_chars, min_chars=min_chars)
    assert [w for c in chunks for w in c.text.split()] == content.split()
    check_invariants(chunks, max_chars)


@settings(max_examples=150)
@given(_text, _sizes, st.sampled_from(["markdown", "html"]))
def test_markup_chunks_are_never_empty_and_bounded(
    content: str, sizes: tuple[int, int], kind: str
) -> None:
    max_chars, min_chars = sizes
    chunks = chunk_document(content, kind, title="T", max_chars=max_chars, min_chars=min_chars)  # type: ignore[arg-type]
    check_invariants(chunks, max_chars)
    document_title(content, kind, "fb")  # type: ignore[arg-type]


_md_lines = st.lists(
    st.sampled_from(
        ["# Title", "## Section", "### Sub", "", "Some text here.", "- item", "1. step",
         "```", "code # x", "> quote", "| a | b |", "|---|---|", "---", "===", "Plain words",
         "A long sentence that goes on and on about shipping and returns. Another one!"]
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150)
@given(_md_lines, _sizes)
def test_markdown_structures_chunk_consistently(lines: list[str], sizes: tuple[int, int]) -> None:
    max_chars, min_chars = sizes
    content = "\n".join(lines)
    chunks = chunk_document(
        content, "markdown", title="Doc", max_chars=max_chars, min_chars=min_chars
    )
    check_invariants(chunks, max_chars)
    for chunk in chunks:
        assert chunk.title == "Doc" or chunk.title.startswith("Doc › ")


def check_invariants(chunks: list[Chunk], max_chars: int) -> None:
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip() == chunk.text and chunk.text
        assert "\n\n\n" not in chunk.text
        assert len(chunk.text) <= max_chars or len(chunk.text.split()) == 1

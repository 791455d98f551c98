"""Tests for realtime.knowledge.extractive: offline, quote-only answers with citations."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.knowledge.extractive import Answer, Passage, compose_answer

RETURNS = Passage(
    source_id="s1",
    title="Help › Returns",
    url="https://shop.example/help#returns",
    text=(
        "Our shop was founded in 2009. Items can be returned within 30 days of delivery.\n\n"
        "Refunds go back to the original payment method. Jackets must be unworn to be returned."
    ),
    score=0.8,
)
SHIPPING = Passage(
    source_id="s2",
    title="Help › Shipping",
    url="https://shop.example/help#shipping",
    text="We ship worldwide. Return shipping is free for jackets",
    score=0.5,
)
UNRELATED = Passage("s3", "About", "", "We love the planet. Jackets are warm.", 0.1)


def test_single_passage_answer_quotes_verbatim_in_order() -> None:
    answer = compose_answer("How do I return a jacket?", [RETURNS])
    assert answer == Answer(
        text=(
            'According to "Help › Returns": Items can be returned within 30 days of delivery. '
            "Jackets must be unworn to be returned. [1]"
        ),
        cited=(0,),
    )


def test_two_passages_are_numbered_in_order_of_appearance() -> None:
    answer = compose_answer("Can I return jackets, and is shipping free?", [RETURNS, SHIPPING])
    assert answer is not None
    assert answer.cited == (1, 0)
    first, second = answer.text.split("\n\n")
    # the sentence without final punctuation gets a full stop, nothing else changes
    assert first == 'According to "Help › Shipping": Return shipping is free for jackets. [1]'
    assert second.startswith('"Help › Returns" adds: ') and second.endswith(" [2]")
    assert "Jackets must be unworn to be returned." in second


def test_same_title_uses_neutral_lead_in() -> None:
    part = Passage("s1", "Help › Returns", "", "Refunds take 5 days to arrive.", 0.9)
    answer = compose_answer("return refund", [RETURNS, part], max_sentences=3)
    assert answer is not None and len(answer.cited) == 2
    assert "\n\nIt also says: " in answer.text


def test_at_most_two_passages_and_max_sentences() -> None:
    passages = [
        Passage(f"s{i}", f"Doc {i}", "", f"Jackets can be returned, says doc {i}.", 0.9)
        for i in range(4)
    ]
    answer = compose_answer("return jackets", passages, max_sentences=5)
    assert answer is not None and answer.cited == (0, 1)
    one = compose_answer("return jackets", passages, max_sentences=1)
    assert one is not None and one.cited == (0,) and one.text.count("[") == 1


def test_none_when_nothing_relevant() -> None:
    assert compose_answer("How do I return a jacket?", []) is None
    assert compose_answer("How do I return a jacket?", [UNRELATED]) is None  # below threshold
    assert compose_answer("What is the weather in Paris?", [RETURNS, SHIPPING]) is None
    assert compose_answer("what is it?", [RETURNS]) is None  # only stopwords
    assert compose_answer("return", [RETURNS], threshold=0.9) is None
    nan = Passage("x", "x", "", "Returns are accepted.", float("nan"))
    assert compose_answer("returns", [nan]) is None


def test_threshold_is_inclusive_and_low_scores_can_be_allowed() -> None:
    answer = compose_answer("warm jackets", [UNRELATED], threshold=0.1)
    assert answer is not None
    assert answer.text == 'According to "About": Jackets are warm. [1]'


def test_duplicate_sentences_are_quoted_once() -> None:
    a = Passage("a", "A", "", "Returns are free.", 0.9)
    b = Passage("b", "B", "", "Returns are free. Returns need a receipt.", 0.8)
    answer = compose_answer("free returns", [a, b])
    assert answer is not None
    assert answer.text.count("Returns are free.") == 1


def test_deterministic() -> None:
    args = ("Can I return jackets, and is shipping free?", [RETURNS, SHIPPING, UNRELATED])
    assert compose_answer(*args) == compose_answer(*args)


# --------------------------------------------------------------------------- properties

_WORDS = ["jacket", "return", "ship", "refund", "free", "days", "the", "is", "we", "order"]
_sentence = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8).map(
    lambda ws: " ".join(ws).capitalize() + "."
)
_passage = st.builds(
    Passage,
    source_id=st.text(max_size=3),
    title=st.sampled_from(["Help", "FAQ › Returns", "", "Shipping"]),
    url=st.just(""),
    text=st.lists(_sentence, min_size=1, max_size=6).map(" ".join),
    score=st.floats(0, 1),
)
_LEAD = re.compile(
    r'^(?:According to "[^"]*":|According to our documentation:|"[^"]*" adds:|It also says:) '
)


@settings(max_examples=150)
@given(
    st.lists(st.sampled_from(_WORDS), max_size=6).map(" ".join),
    st.lists(_passage, max_size=5),
    st.integers(1, 4),
)
def test_answers_cite_valid_passages_and_quote_verbatim(
    question: str, passages: list[Passage], max_sentences: int
) -> None:
    answer = compose_answer(question, passages, max_sentences=max_sentences)
    if answer is None:
        return
    paragraphs = answer.text.split("\n\n")
    assert len(paragraphs) == len(answer.cited) <= 2
    assert len(set(answer.cited)) == len(answer.cited)
    quoted = 0
    for n, (paragraph, index) in enumerate(zip(paragraphs, answer.cited, strict=True), 1):
        assert 0 <= index < len(passages) and passages[index].score >= 0.2
        assert re.findall(r"\[(\d+)\]", paragraph) == [str(n)]
        lead = _LEAD.match(paragraph)
        assert lead is not None and paragraph.endswith(f" [{n}]")
        body = paragraph[lead.end() : -len(f" [{n}]")]
        for sentence in re.split(r"(?<=\.) ", body):
            assert sentence in passages[index].text
            quoted += 1
    assert 1 <= quoted <= max_sentences

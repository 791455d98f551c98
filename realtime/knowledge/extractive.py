"""Offline (LLM-free) answers: quote the best sentences of the best passages, with citations.

:func:`compose_answer` is purely extractive.  Every sentence of the answer is copied verbatim
from a passage; the only words it adds are a short lead-in naming the source
(``According to "<title>": ...``) and citation markers ``[n]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .text import coverage, query_terms, split_sentences, words

__all__ = ["Answer", "Passage", "compose_answer"]

_MAX_PASSAGES = 2
_RELATIVE_CUTOFF = 0.5  # extra sentences must score at least this fraction of the best one
_PASSAGE_BONUS = 0.1
_FIRST_SENTENCE_BONUS = 0.05
_SHORT_PENALTY = 0.1  # fragments of fewer than 4 words ("Shipping", "Step 2")
_LONG_PENALTY = 0.1  # run-on "sentences" over 400 characters
_CODE_PENALTY = 0.6  # lines of JSON or code: they rarely answer a question by themselves
_CODE_CHARS = frozenset('{}[]"=<>|`;')
_MAX_TITLE = 100


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage; ``score`` is its 0..1 relevance as computed by the caller."""

    source_id: str
    title: str
    url: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    """Plain-text answer with ``[n]`` markers; ``cited[n - 1]`` indexes the passages list."""

    text: str
    cited: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Candidate:
    score: float
    passage: int  # index into the passages list
    position: int  # sentence index within the passage
    text: str


def _candidates(terms: list[str], index: int, passage: Passage) -> list[_Candidate]:
    """Score the sentences of one passage that cover at least one query term."""
    relevance = passage.score if math.isfinite(passage.score) else 0.0
    bonus = _PASSAGE_BONUS * min(max(relevance, 0.0), 1.0)
    out: list[_Candidate] = []
    for position, sentence in enumerate(split_sentences(passage.text)):
        cov = coverage(terms, sentence)
        if cov <= 0.0:
            continue
        score = cov + bonus + (_FIRST_SENTENCE_BONUS if position == 0 else 0.0)
        if len(words(sentence)) < 4:
            score -= _SHORT_PENALTY
        if len(sentence) > 400:
            score -= _LONG_PENALTY
        if sum(ch in _CODE_CHARS for ch in sentence) > 0.08 * len(sentence):
            score -= _CODE_PENALTY
        out.append(_Candidate(score, index, position, sentence))
    return out


def _select(candidates: list[_Candidate], max_sentences: int) -> list[_Candidate]:
    """Best sentences first, from at most two passages, without duplicates or weak extras."""
    ranked = sorted(candidates, key=lambda c: (-c.score, c.passage, c.position))
    chosen: list[_Candidate] = []
    passages: list[int] = []
    seen: set[str] = set()
    for cand in ranked:
        if len(chosen) == max_sentences:
            break
        key = " ".join(words(cand.text))
        if key in seen or (chosen and cand.score < _RELATIVE_CUTOFF * chosen[0].score):
            continue
        if cand.passage not in passages:
            if len(passages) == _MAX_PASSAGES:
                continue
            passages.append(cand.passage)
        seen.add(key)
        chosen.append(cand)
    return chosen


def _quote(sentence: str) -> str:
    """The sentence verbatim, plus a full stop when it ends without punctuation."""
    return sentence + "." if sentence[-1].isalnum() else sentence


def _title(title: str) -> str:
    clean = " ".join(title.split()).replace('"', "'")  # keep the lead-in's quotes balanced
    if len(clean) > _MAX_TITLE:
        clean = clean[:_MAX_TITLE].rsplit(" ", 1)[0] + "\u2026"
    return clean


def compose_answer(
    question: str,
    passages: Sequence[Passage],
    *,
    threshold: float = 0.2,
    max_sentences: int = 3,
) -> Answer | None:
    """Answer ``question`` by quoting the most relevant sentences of ``passages``.

    Only passages with ``score >= threshold`` are used.  Sentences are scored by how much of
    the question they cover (plus small bonuses for the passage's score and for opening the
    passage); up to ``max_sentences`` are quoted from at most two passages, in their original
    order within each passage, the passage holding the best sentence first.  Returns ``None``
    when no passage qualifies or no sentence mentions any question term, so the caller can
    say it does not know.  Deterministic.
    """
    terms = query_terms(question)
    if not terms or max_sentences < 1:
        return None
    candidates = [
        cand
        for index, passage in enumerate(passages)
        if passage.score >= threshold
        for cand in _candidates(terms, index, passage)
    ]
    chosen = _select(candidates, max_sentences)
    if not chosen:
        return None
    order = list(dict.fromkeys(c.passage for c in chosen))
    paragraphs: list[str] = []
    for n, index in enumerate(order, start=1):
        picked = sorted((c for c in chosen if c.passage == index), key=lambda c: c.position)
        body = " ".join(_quote(c.text) for c in picked)
        title = _title(passages[index].title)
        if n == 1:
            lead = f'According to "{title}":' if title else "According to our documentation:"
        elif title and title != _title(passages[order[0]].title):
            lead = f'"{title}" adds:'
        else:
            lead = "It also says:"
        paragraphs.append(f"{lead} {body} [{n}]")
    return Answer(text="\n\n".join(paragraphs), cited=tuple(order))

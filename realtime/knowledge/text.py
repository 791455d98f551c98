"""Query analysis helpers: tokenising, Porter stemming, FTS5 query building, coverage.

Everything here is pure and deterministic.  The tokeniser mirrors what SQLite's
``unicode61`` tokenizer does closely enough (letters/digits/marks are token characters,
Latin diacritics are folded, case is folded) and :func:`stem` is a faithful port of the
Porter (1980) algorithm as implemented by FTS5's ``porter`` tokenizer, so stems computed
here agree with the ones stored in the index.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "stems_of",
    "STOPWORDS",
    "coverage",
    "fts_query",
    "query_terms",
    "sentence_spans",
    "split_sentences",
    "stem",
    "words",
]

STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can cannot could did do does doing done down during each
    few for from further had has have having he her here hers herself him himself his how i
    if in into is it its itself just me more most my myself no nor not of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    us very was we were what when where which while who whom whose why will with would you
    your yours yourself yourselves shall may might must also get got please hi hello hey
    thanks thank tell let lets ok okay dont doesnt didnt cant couldnt wont wouldnt shouldnt
    isnt arent wasnt werent havent hasnt hadnt im ive youre youve theyre whats hows wheres
    whos thats theres
    """.split()
)

_MAX_TERMS = 16
_APOSTROPHES = "'\u2019"
_ASCII_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


# --------------------------------------------------------------------------- tokenising


def _fold(text: str) -> str:
    """NFKC-normalise and strip diacritics from Latin letters (like unicode61 does)."""
    out: list[str] = []
    prev_latin = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch) and prev_latin:
            continue
        out.append(ch)
        prev_latin = ord(ch) < 0x250
    return unicodedata.normalize("NFKC", "".join(out))


def _is_token_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LNM" or cat == "Co"


def _token_parts(text: str) -> list[list[str]]:
    """Split ``text`` into lowercase tokens; each token is the list of its apostrophe parts."""
    lowered = text.lower()
    if not lowered.isascii():
        lowered = _fold(lowered).lower()
    if lowered.isascii():
        return [m.group().split("'") for m in _ASCII_TOKEN.finditer(lowered)]
    tokens: list[list[str]] = []
    parts: list[str] = []
    buf: list[str] = []
    n = len(lowered)
    for i, ch in enumerate(lowered):
        if _is_token_char(ch) and (buf or parts or unicodedata.category(ch)[0] != "M"):
            buf.append(ch)
        elif ch in _APOSTROPHES and buf and i + 1 < n and _is_token_char(lowered[i + 1]):
            parts.append("".join(buf))
            buf = []
        elif buf:
            parts.append("".join(buf))
            tokens.append(parts)
            parts, buf = [], []
    if buf:
        parts.append("".join(buf))
        tokens.append(parts)
    return tokens


def words(text: str) -> list[str]:
    """Return the lowercase word tokens of ``text`` (letters/digits; "don't" -> "dont")."""
    return ["".join(parts) for parts in _token_parts(text)]


# --------------------------------------------------------------------------- Porter stemmer


def _cons(w: str) -> list[bool]:
    """Consonant flags per position, Porter style ("y" is a consonant after a vowel...)."""
    flags: list[bool] = []
    for i, c in enumerate(w):
        if c in "aeiou":
            flags.append(False)
        elif c == "y":
            flags.append(i == 0 or not flags[i - 1])
        else:
            flags.append(True)
    return flags


def _m(s: str) -> int:
    """Porter's measure: the number of VC sequences in ``s``."""
    flags = _cons(s)
    return sum(1 for i in range(1, len(s)) if flags[i] and not flags[i - 1])


def _has_vowel(s: str) -> bool:
    return not all(_cons(s))


def _cvc(s: str) -> bool:
    """True when ``s`` ends consonant-vowel-consonant and the last one is not w, x or y."""
    if len(s) < 3:
        return False
    f = _cons(s)
    return f[-1] and not f[-2] and f[-3] and s[-1] not in "wxy"


_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("logi", "log"),
    ("bli", "ble"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
_STEP4 = "al ance ence er ic able ible ant ement ment ent ion ou ism ate iti ous ive ize".split()


def _replace(w: str, rules: Sequence[tuple[str, str]], min_m: int) -> str:
    """Apply the first rule whose suffix matches, if the remaining stem has measure > min_m."""
    for suffix, repl in rules:
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            return base + repl if _m(base) > min_m else w
    return w


def _step1(w: str) -> str:
    if w.endswith("s"):
        if (w.endswith("sses") and len(w) > 4) or (w.endswith("ies") and len(w) > 3):
            w = w[:-2]
        elif not w.endswith("ss"):
            w = w[:-1]
    if w.endswith("eed") and len(w) > 3:  # FTS5 quirk: "eed" alone falls through to "ed"
        if _m(w[:-3]) > 0:
            w = w[:-1]
    else:
        for suffix in ("ed", "ing"):
            if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
                w = w[: -len(suffix)]
                if w.endswith(("at", "bl", "iz")):
                    w += "e"
                elif len(w) > 1 and w[-1] == w[-2] and w[-1] not in "aeioulsz":
                    w = w[:-1]
                elif _m(w) == 1 and _cvc(w):
                    w += "e"
                break
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    return w


def _step4(w: str) -> str:
    for suffix in _STEP4:
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            if suffix == "ion" and not base.endswith(("s", "t")):
                continue
            return base if _m(base) > 1 else w
    return w


def _step5(w: str) -> str:
    if w.endswith("e"):
        base = w[:-1]
        m = _m(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            w = base
    if w.endswith("ll") and _m(w[:-1]) > 1:
        w = w[:-1]
    return w


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Porter-stem a lowercase ``word`` exactly like SQLite FTS5's ``porter`` tokenizer.

    Like FTS5 it works on UTF-8 bytes (non-ASCII bytes count as consonants) and leaves
    tokens shorter than 3 or longer than 64 bytes unchanged.
    """
    if word.isascii():
        w = word
    else:  # one char per UTF-8 byte, so lengths and measures match FTS5 exactly
        w = word.encode("utf-8").decode("latin-1")
    if not 3 <= len(w) <= 64:
        return word
    w = _step5(_step4(_replace(_replace(_step1(w), _STEP2, 0), _STEP3, 0)))
    return w if w.isascii() else w.encode("latin-1").decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- queries


def _content_words(text: str) -> list[list[str]]:
    """Distinct non-stopword tokens (as apostrophe parts), in order of first appearance."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for parts in _token_parts(text):
        word = "".join(parts)
        if word in STOPWORDS or word in seen:
            continue
        seen.add(word)
        out.append(parts)
    return out


def query_terms(text: str) -> list[str]:
    """Distinct stems of the non-stopword words of ``text``, in order, at most 16."""
    terms: list[str] = []
    for parts in _content_words(text):
        s = stem("".join(parts))
        if s not in terms:
            terms.append(s)
            if len(terms) == _MAX_TERMS:
                break
    return terms


def fts_query(text: str) -> str:
    """Build a safe FTS5 ``MATCH`` expression: an OR of quoted non-stopword words.

    Words are not stemmed (the porter tokenizer stems the phrase itself).  A word written
    with an apostrophe becomes a two-token phrase ("don't" -> ``"don t"``) because
    unicode61 splits on apostrophes.  Returns ``""`` when there are no usable words.
    """
    phrases: list[str] = []
    for parts in _content_words(text)[:_MAX_TERMS]:
        phrase = " ".join(parts).replace('"', '""')
        phrases.append(f'"{phrase}"')
    return " OR ".join(phrases)


def _weight(term: str) -> float:
    return 1.0 + min(len(term), 10) / 10.0


@lru_cache(maxsize=8192)
def stems_of(text: str) -> frozenset[str]:
    """The distinct stems of ``text``, cached: retrieval rescores the same chunks again and
    again, and tokenising non-ASCII text is the slow part of a run's first token."""
    return frozenset(stem(w) for w in words(text))


def coverage(terms: Sequence[str], text: str) -> float:
    """Weighted fraction (0..1) of the query stems ``terms`` that occur among ``text``'s stems.

    Longer terms weigh a little more (1.0 + len/10, capped at 2.0), since short stems tend
    to be less specific.  Returns 0.0 when there are no terms.
    """
    distinct = list(dict.fromkeys(terms))
    if not distinct:
        return 0.0
    present = stems_of(text)
    total = sum(_weight(t) for t in distinct)
    hit = sum(_weight(t) for t in distinct if t in present)
    return hit / total


# --------------------------------------------------------------------------- sentences

_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_NEXT_CHAR = re.compile(r"\s*(\S)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st vs etc e.g i.e eg ie no nos fig approx inc ltd jr sr co".split()
)


def _is_boundary(line: str, end: int, dot: int) -> bool:
    """Decide whether the punctuation run ending at ``end`` closes a sentence."""
    nxt = _NEXT_CHAR.match(line, end)
    if nxt is None or nxt.group(1).islower():
        return False
    if line[dot] == ".":
        start = dot
        while start > 0 and not line[start - 1].isspace():
            start -= 1
        prev = line[start:dot].lower().lstrip("(\"'\u201c\u2018")
        if prev in _ABBREVIATIONS or (len(prev) == 1 and prev.isalpha()):
            return False
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` offsets of the sentences in ``text``.

    Line breaks always end a sentence; inside a line a sentence ends at ``.``, ``!``, ``?``
    or ``…`` (plus closing quotes/brackets) followed by whitespace and a non-lowercase
    character, except after common abbreviations and single-letter initials.  Spans never
    include surrounding whitespace and ``text[start:end]`` is always non-blank.
    """
    spans: list[tuple[int, int]] = []
    offset = 0
    for line in text.split("\n"):
        start = 0
        for m in _BOUNDARY.finditer(line):
            if _is_boundary(line, m.end(), m.start()):
                _add_span(spans, line, offset, start, m.end())
                start = m.end()
        _add_span(spans, line, offset, start, len(line))
        offset += len(line) + 1
    return spans


def _add_span(spans: list[tuple[int, int]], line: str, offset: int, a: int, b: int) -> None:
    piece = line[a:b]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        spans.append((offset + a + lead, offset + a + lead + len(stripped)))


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into verbatim sentences (see :func:`sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]

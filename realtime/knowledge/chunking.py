"""Split knowledge documents (plain text, markdown, HTML) into titled, anchored passages.

Documents are parsed into headings and plain-text *blocks* (paragraphs are whitespace-
normalised; list items, table rows and code lines stay on their own lines).  Headings cut
sections; a section is packed into chunks of at most ``max_chars``: blocks are joined with
``"\n\n"`` and a block that does not fit is split at line breaks, then sentence ends, then
between words (never inside one).  A runt last piece (< ``min_chars``) is re-balanced with
its predecessor at an equally strong boundary.  Tiny sections are deliberately **not**
merged: each chunk cites exactly one heading (title + URL anchor), and merging would cite
part of the text under the wrong heading; short precise passages retrieve well anyway.
"""

from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal, NamedTuple

from .text import split_sentences

__all__ = ["Chunk", "SourceKind", "chunk_document", "document_title", "slugify"]

SourceKind = Literal["text", "markdown", "html"]
_SEP = " \u203a "  # " › "


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a document: ``title``/``anchor`` locate it, ``text`` is plain text."""

    ord: int
    title: str
    anchor: str
    text: str


class _Item(NamedTuple):
    level: int  # 1..6 for a heading, 0 for a block of body text
    text: str


def _norm(text: str) -> str:
    return " ".join(text.split())


def _code_text(lines: list[str]) -> str:
    """Render preformatted lines: dedented, right-stripped, blank lines dropped."""
    dedented = textwrap.dedent("\n".join(line.expandtabs(4).rstrip() for line in lines))
    return "\n".join(line for line in dedented.split("\n") if line.strip())


# --------------------------------------------------------------------------- markdown inline

_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_CODE_SPAN = re.compile(r"(`+)(.{1,2000}?)(?<!`)\1(?!`)", re.S)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_LINKS = (  # (pattern, replacement), applied in order; lengths bounded to stay linear
    (re.compile(r"!\[([^\]]*)\]\((?:[^()]|\([^()]*\)){0,2000}\)"), r"\1"),  # image
    (re.compile(r"\[([^\]]*)\]\((?:[^()]|\([^()]*\)){0,2000}\)"), r"\1"),  # link
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference link
    (re.compile(r"<((?:https?|ftp|mailto):[^>\s]+|[^@<>\s]+@[^@<>\s]+\.[^@<>\s]+)>"), r"\1"),
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->", re.S), ""),  # HTML
)
_EMPHASIS = (
    re.compile(r"(\*{1,3})(?=[^\s*])(.{1,300}?)(?<=[^\s*])\1", re.S),
    re.compile(r"(?<!\w)(_{1,3})(?=[^\s_])(.{1,300}?)(?<=[^\s_])\1(?!\w)", re.S),
    re.compile(r"(~~)(?=\S)(.{1,300}?)(?<=\S)~~", re.S),
)


def _inline(text: str) -> str:
    """Render inline markdown to plain text (code spans verbatim, links -> their label)."""
    saved: list[str] = []

    def keep(value: str) -> str:
        saved.append(value)
        return f"\ue000{len(saved) - 1}\ue001"

    s = text.replace("\ue000", "").replace("\ue001", "")
    s = _CODE_SPAN.sub(lambda m: keep(m.group(2).strip() or m.group(2)), s)
    s = _ESCAPE.sub(lambda m: keep(m.group(1)), s)
    for pattern, repl in _LINKS:
        s = pattern.sub(repl, s)
    for _ in range(4):
        before = s
        for pattern in _EMPHASIS:
            s = pattern.sub(r"\2", s)
        if s == before:
            break
    s = html.unescape(s)
    s = _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], s)
    return _norm(s)


# --------------------------------------------------------------------------- markdown blocks

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_LIST = re.compile(r"^\s*(?:[-*+]|(\d{1,9}[.)]))(?:[ \t]+(.*))?$")
_TASK = re.compile(r"^\[[ xX]\][ \t]+")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*\S+")
_COMMENT = re.compile(r"<!--.*?-->")


def _is_table_rule(line: str) -> bool:
    return "|" in line and "-" in line and not line.strip().strip("|-: \t")


def _cells(row: str) -> str:
    cells = [_inline(c) for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
    return " | ".join(c for c in cells if c)


class _Markdown:
    """A small line-based markdown reader producing headings and plain-text blocks."""

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.mode = ""  # "", "para", "list" or "table"
        self.buf: list[str] = []

    def flush(self) -> None:
        if self.mode == "para":
            text = _inline(" ".join(self.buf))
        elif self.mode == "list":
            text = "\n".join(t for t in (_inline(x) for x in self.buf) if t)
        else:
            text = "\n".join(t for t in (_cells(row) for row in self.buf) if t)
        if text:
            self.items.append(_Item(0, text))
        self.mode, self.buf = "", []

    def parse(self, content: str) -> list[_Item]:
        lines = content.splitlines()
        if lines and lines[0].strip() == "---":  # YAML front matter
            end = next((i for i, x in enumerate(lines[1:60], 1) if x.strip() in ("---", "...")), 0)
            if end and any(re.match(r"^[\w-]+\s*:", x) for x in lines[1:end]):
                lines = lines[end + 1 :]
        fence, in_comment = "", False
        code: list[str] = []
        for raw in lines:
            if fence:
                stripped = raw.strip()
                if stripped.startswith(fence) and not stripped.strip(fence[0]):
                    self.items.append(_Item(0, _code_text(code)))
                    fence, code = "", []
                else:
                    code.append(raw)
                continue
            line = raw
            if in_comment:
                if "-->" not in line:
                    continue
                line, in_comment = line.split("-->", 1)[1], False
            line = _COMMENT.sub("", line)
            if "<!--" in line:
                line, in_comment = line.split("<!--", 1)[0], True
            while m := _QUOTE.match(line):
                line = line[m.end() :]
            self.line(line)
            if m := _FENCE.match(line):
                fence = m.group(1)
        if fence and code:
            self.items.append(_Item(0, _code_text(code)))
        self.flush()
        return [i for i in self.items if i.level or i.text.strip()]

    def line(self, line: str) -> None:
        if _FENCE.match(line) or not line.strip():
            self.flush()
        elif m := _ATX.match(line):
            self.flush()
            self.items.append(_Item(len(m.group(1)), _inline(_ATX_CLOSE.sub("", m.group(2)))))
        elif self.mode == "para" and (m := _SETEXT.match(line)):
            level = 1 if m.group(1).startswith("=") else 2
            self.items.append(_Item(level, _inline(" ".join(self.buf))))
            self.mode, self.buf = "", []
        elif _is_table_rule(line):
            if self.mode == "para" and len(self.buf) == 1 and "|" in self.buf[0]:
                self.mode = "table"
            elif self.mode != "table":
                self.flush()
        elif _RULE.match(line) or _SETEXT.match(line) or _REF_DEF.match(line):
            self.flush()
        elif m := _LIST.match(line):
            if self.mode != "list":
                self.flush()
                self.mode = "list"
            item = _TASK.sub("", (m.group(2) or "").strip())
            self.buf.append(f"{m.group(1)} {item}" if m.group(1) else item)
        elif self.mode == "table" and "|" in line:
            self.buf.append(line)
        elif self.mode == "list":
            self.buf[-1] += " " + line.strip()
        else:
            if self.mode == "table":
                self.flush()
            self.mode = "para"
            self.buf.append(line.strip())


# --------------------------------------------------------------------------- HTML

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SKIP = frozenset({"script", "style", "template", "noscript", "svg", "iframe", "object"})
_ENDS_HEADING = frozenset("p ul ol li dl table pre blockquote section article".split())
_BLOCKS = frozenset(
    """address article aside blockquote body caption center dd details dialog div dl dt
    fieldset figcaption figure footer form header hr html main nav ol p pre section summary
    table tbody tfoot thead ul""".split()
)


class _HTML(HTMLParser):
    """Collects the ``<title>``, headings and block texts of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[_Item] = []
        self.title: str | None = None
        self._title: list[str] | None = None
        self._heading: tuple[int, list[str]] | None = None
        self._lines: list[list[str]] = [[]]
        self._skip = 0
        self._pre = 0

    def _end_title(self) -> None:
        if self._title is not None:
            self.title, self._title = _norm("".join(self._title)), None

    def _end_heading(self) -> None:
        if self._heading is not None:
            self.items.append(_Item(self._heading[0], _norm("".join(self._heading[1]))))
            self._heading = None

    def _flush(self) -> None:
        lines = ["".join(parts) for parts in self._lines]
        text = _code_text(lines) if self._pre else "\n".join(filter(None, map(_norm, lines)))
        if text:
            self.items.append(_Item(0, text))
        self._lines = [[]]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        if self._skip:
            return
        if tag != "title":
            self._end_title()
        elif self.title is None:
            self._title = []
        if tag in _HEADINGS or tag in _ENDS_HEADING:
            self._end_heading()  # an unclosed heading ends at the next heading or paragraph
        if tag in _HEADINGS:
            self._flush()
            self._heading = (_HEADINGS[tag], [])
        elif self._heading is not None:
            if tag == "br":
                self._heading[1].append(" ")
        elif tag in ("br", "li", "tr", "dt", "dd"):
            self._lines.append([])
        elif tag in ("td", "th") and "".join(self._lines[-1]).strip():
            self._lines[-1].append(" | ")
        elif tag in _BLOCKS:
            self._flush()
            self._pre += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "title":
            self._end_title()
        elif tag in _HEADINGS:
            self._end_heading()
        elif self._heading is None and tag in _BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif self._heading is None and tag in ("li", "tr"):
            self._lines.append([])

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._title is not None:
            self._title.append(data)
        elif self._heading is not None:
            self._heading[1].append(data)
        elif self._pre:
            first, *rest = data.split("\n")
            self._lines[-1].append(first)
            self._lines.extend([part] for part in rest)
        else:
            self._lines[-1].append(data)

    def run(self, content: str) -> _HTML:
        self.feed(content)
        self.close()
        self._end_title()
        self._end_heading()
        self._flush()
        return self


# --------------------------------------------------------------------------- parsing


def _text_blocks(content: str) -> list[_Item]:
    """Plain text: paragraphs separated by blank lines, whitespace collapsed."""
    paragraphs = re.split(r"\n(?:[^\S\n]*\n)+", "\n".join(content.splitlines()))
    return [_Item(0, _norm(p)) for p in paragraphs if p.strip()]


def _parse(content: str, kind: str) -> list[_Item]:
    if kind == "markdown":
        return _Markdown().parse(content)
    if kind == "html":
        return _HTML().run(content).items
    if kind == "text":
        return _text_blocks(content)
    raise ValueError(f"unknown source kind {kind!r}; expected 'text', 'markdown' or 'html'")


def document_title(content: str, kind: SourceKind, fallback: str) -> str:
    """Return the document's title: the first markdown H1 (``# x`` or setext ``x\\n===``),
    the HTML ``<title>`` or else first ``<h1>``; ``fallback`` for plain text or when absent.
    """
    if kind == "text":
        return fallback
    if kind == "html":
        parser = _HTML().run(content)
        if parser.title:
            return parser.title
        items = parser.items
    else:
        items = _parse(content, kind)
    for item in items:
        if item.level == 1 and item.text:
            return item.text
    return fallback


# --------------------------------------------------------------------------- anchors

_SLUG_DROP = re.compile(r"[^\w\- ]")


def slugify(heading: str) -> str:
    """GitHub-style slug of a heading: lowercase, punctuation dropped, each space -> ``-``."""
    return _SLUG_DROP.sub("", heading.lower()).replace(" ", "-")


def _unique_slug(heading: str, seen: dict[str, int]) -> str:
    """Deduplicate slugs the way GitHub does (``faq``, ``faq-1``, ``faq-2``...)."""
    base = result = slugify(heading)
    while result in seen:
        seen[base] += 1
        result = f"{base}-{seen[base]}"
    seen[result] = 0
    return result


# --------------------------------------------------------------------------- splitting


class _Unit(NamedTuple):
    strength: int  # boundary before this unit: 3 block, 2 line, 1 sentence, 0 word
    sep: str
    text: str


def _units(block: str, max_chars: int) -> list[_Unit]:
    """Break a block into units that fit ``max_chars`` (a single long word may not)."""
    if len(block) <= max_chars:
        return [_Unit(3, "\n\n", block)]
    units: list[_Unit] = []
    for li, line in enumerate(block.split("\n")):
        strength, sep = (3, "\n\n") if li == 0 else (2, "\n")
        if len(line) <= max_chars:
            units.append(_Unit(strength, sep, line))
            continue
        for si, sentence in enumerate(split_sentences(line)):
            if si:
                strength, sep = 1, " "
            if len(sentence) <= max_chars:
                units.append(_Unit(strength, sep, sentence))
                continue
            for wi, word in enumerate(sentence.split()):
                units.append(_Unit(strength, sep, word) if wi == 0 else _Unit(0, " ", word))
    return units


def _render(units: list[_Unit]) -> str:
    return units[0].text + "".join(u.sep + u.text for u in units[1:])


def _pack(units: list[_Unit], max_chars: int, min_chars: int) -> list[str]:
    """Greedily pack units into pieces of at most ``max_chars``; re-balance a runt tail."""
    pieces: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + len(unit.sep) + len(unit.text) > max_chars:
            pieces.append(current)
            current, size = [], 0
        size += (len(unit.sep) if current else 0) + len(unit.text)
        current.append(unit)
    if current:
        pieces.append(current)
    if len(pieces) >= 2 and len(_render(pieces[-1])) < min_chars:
        pieces[-2:] = _rebalance(pieces[-2] + pieces[-1], len(pieces[-2]), max_chars)
    return [_render(p) for p in pieces]


def _rebalance(units: list[_Unit], split: int, max_chars: int) -> list[list[_Unit]]:
    """Move the boundary between two pieces to a boundary at least as strong that makes the
    smaller side as large as possible while both sides still fit ``max_chars``."""
    total, left = len(_render(units)), -len(units[0].sep)
    best, best_min = split, min(len(_render(units[:split])), len(_render(units[split:])))
    for k in range(1, len(units)):
        left += len(units[k - 1].sep) + len(units[k - 1].text)  # == len(_render(units[:k]))
        right = total - left - len(units[k].sep)
        if units[k].strength >= units[split].strength and max(left, right) <= max_chars:
            if min(left, right) > best_min:
                best, best_min = k, min(left, right)
    return [units[:best], units[best:]]


# --------------------------------------------------------------------------- public API


def chunk_document(
    content: str,
    kind: SourceKind,
    *,
    title: str,
    max_chars: int = 1200,
    min_chars: int = 200,
) -> list[Chunk]:
    """Split a document into :class:`Chunk` passages (rules in the module docstring).

    ``title`` is the document title (usually from :func:`document_title`).  Text before the
    first heading gets ``title`` and anchor ``""``; a section gets ``"<title> › <heading>"``
    (just ``title`` when the heading repeats it) and the heading's GitHub-style slug.
    Chunks never have empty text and are at most ``max_chars`` long unless a single word is
    longer.  Headings without body text produce no chunk.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    doc_title = _norm(title)
    sections: list[tuple[str, str, list[str]]] = [(doc_title, "", [])]
    seen: dict[str, int] = {}
    for item in _parse(content, kind):
        if item.level:
            anchor = _unique_slug(item.text, seen)
            name = item.text
            if not name or name.casefold() == doc_title.casefold():
                name = doc_title
            elif doc_title:
                name = f"{doc_title}{_SEP}{name}"
            sections.append((name, anchor, []))
        else:
            sections[-1][2].append(item.text)
    chunks: list[Chunk] = []
    for name, anchor, blocks in sections:
        units = [u for block in blocks for u in _units(block, max_chars) if u.text.strip()]
        if not units:
            continue
        for piece in _pack(units, max_chars, min_chars):
            if piece.strip():
                chunks.append(Chunk(len(chunks), name, anchor, piece.strip()))
    return chunks

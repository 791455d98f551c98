"""Adding knowledge sources: chunk a document and store it with its chunks."""

from __future__ import annotations

from pathlib import Path

from realtime.errors import ProtocolError
from realtime.knowledge.chunking import SourceKind, chunk_document, document_title
from realtime.store.knowledge import KnowledgeStore
from realtime.store.records import Source

KINDS: tuple[SourceKind, ...] = ("text", "markdown", "html")
MAX_SOURCE_CHARS = 2_000_000


async def add_source(
    store: KnowledgeStore,
    *,
    tenant_id: str,
    bot_uuid: str,
    content: str,
    kind: str,
    title: str | None = None,
    url: str = "",
) -> Source:
    """Chunk ``content`` and store it. Chunk URLs are ``url#anchor`` for sectioned documents."""
    if kind not in KINDS:
        raise ProtocolError("invalid_field", f"kind must be one of {', '.join(KINDS)}")
    if not content.strip():
        raise ProtocolError("invalid_field", "content must not be empty")
    if len(content) > MAX_SOURCE_CHARS:
        raise ProtocolError("invalid_field", f"content is over {MAX_SOURCE_CHARS} characters")
    source_kind: SourceKind = kind
    doc_title = title or document_title(content, source_kind, fallback=url or "Untitled")
    chunks = chunk_document(content, source_kind, title=doc_title)
    rows = [
        (chunk.title, f"{url}#{chunk.anchor}" if url and chunk.anchor else url, chunk.text)
        for chunk in chunks
    ]
    return await store.add_source(
        tenant_id=tenant_id,
        bot_uuid=bot_uuid,
        title=doc_title[:300],
        url=url,
        kind=kind,
        content=content,
        chunks=rows,
    )


def kind_of(path: Path) -> SourceKind:
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix in (".html", ".htm"):
        return "html"
    return "text"

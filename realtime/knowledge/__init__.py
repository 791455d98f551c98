"""Knowledge sources: chunking documents, analysing queries and composing offline answers."""

from .chunking import Chunk, SourceKind, chunk_document, document_title
from .extractive import Answer, Passage, compose_answer
from .text import STOPWORDS, coverage, fts_query, query_terms, split_sentences, stem, words

__all__ = [
    "STOPWORDS",
    "Answer",
    "Chunk",
    "Passage",
    "SourceKind",
    "chunk_document",
    "compose_answer",
    "coverage",
    "document_title",
    "fts_query",
    "query_terms",
    "split_sentences",
    "stem",
    "words",
]

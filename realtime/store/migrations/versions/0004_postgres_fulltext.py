"""Full-text search for knowledge chunks on PostgreSQL: a generated tsvector and a GIN index.

SQLite has had its FTS5 index since 0001; on other dialects this migration does nothing.
The title weighs more than the text (A and B), like FTS5's bm25 weights (2.0 and 1.0).
Punctuation is replaced by spaces before parsing, so ``history.reset`` or ``/docs/x.md``
index their words, as FTS5's unicode61 tokenizer and the query side (``fts_query``) do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Characters PostgreSQL's parser keeps inside host, file, URL, e-mail and number tokens.
_JOINERS = "./:-@#=+~?&%_"
_VECTOR = " || ".join(
    f"setweight(to_tsvector('english'::regconfig, "
    f"translate(\"{column}\", '{_JOINERS}', '{' ' * len(_JOINERS)}')), '{weight}')"
    for column, weight in (("title", "A"), ("text", "B"))
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"ALTER TABLE knowledge_chunks ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({_VECTOR}) STORED"
    )
    op.execute(
        "CREATE INDEX ix_knowledge_chunks_search ON knowledge_chunks USING gin (search_vector)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_knowledge_chunks_search")
    op.execute("ALTER TABLE knowledge_chunks DROP COLUMN IF EXISTS search_vector")

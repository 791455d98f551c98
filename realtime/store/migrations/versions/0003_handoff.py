"""Human agents, their login tokens, and the handoff state of conversations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(64),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(200)),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "email", name="uq_agents_tenant_email"),
    )
    op.create_table(
        "agent_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "agent_id",
            sa.String(36),
            sa.ForeignKey("agents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(36)))
        batch.add_column(sa.Column("queued_at", sa.DateTime))
        batch.add_column(sa.Column("agent_read_at", sa.DateTime))
        batch.add_column(sa.Column("handoff_reason", sa.String(32)))
    op.create_index("ix_conversations_queue", "conversations", ["tenant_id", "status", "queued_at"])
    op.create_index("ix_conversations_agent", "conversations", ["agent_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_conversations_agent", "conversations")
    op.drop_index("ix_conversations_queue", "conversations")
    with op.batch_alter_table("conversations") as batch:
        for column in ("handoff_reason", "agent_read_at", "queued_at", "agent_id"):
            batch.drop_column(column)
    op.drop_table("agent_tokens")
    op.drop_table("agents")

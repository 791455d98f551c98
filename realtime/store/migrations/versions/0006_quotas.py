"""Tenants' monthly message quotas, and the messages each tenant sent per month.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("monthly_messages", sa.Integer(), nullable=True))
    op.create_table(
        "usage",
        sa.Column(
            "tenant_id",
            sa.String(64),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("messages", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("monthly_messages")

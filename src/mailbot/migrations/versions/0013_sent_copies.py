"""copies of sent messages owed to the mailbox's sent folder

Revision ID: 0013_sent_copies
Revises: 0012_shadow
Create Date: 2026-12-07 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_sent_copies"
down_revision = "0012_shadow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Messages sent before this are not filed: only what is sent from now on is owed.
    op.create_table(
        "sent_copies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("outbox_id", sa.Integer(), sa.ForeignKey("outbox.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("outbox_id"),
    )
    op.create_index("ix_sent_copies_status_next", "sent_copies", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_sent_copies_status_next", table_name="sent_copies")
    op.drop_table("sent_copies")

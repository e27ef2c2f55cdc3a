"""shadow mode: when mailbot ran in shadow and when it went live

Revision ID: 0012_shadow
Revises: 0011_event_data
Create Date: 2026-12-07 23:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_shadow"
down_revision = "0011_event_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Outbox rows recorded in shadow mode need no column: their status says 'shadow'.
    op.create_table(
        "shadow_periods",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("began_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("shadow_periods")

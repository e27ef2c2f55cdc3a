"""why a case's clock is stopped, the days it was paused, the resident's language

Revision ID: 0010_statutory_processes
Revises: 0009_failures
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_statutory_processes"
down_revision = "0009_failures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("clock_stop", sa.String(20), nullable=True))
        batch.add_column(sa.Column("paused_days", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("language", sa.String(5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("language")
        batch.drop_column("paused_days")
        batch.drop_column("clock_stop")

"""what each case event means for the figures, as data beside its wording

Revision ID: 0011_event_data
Revises: 0010_statutory_processes
Create Date: 2026-12-07 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_event_data"
down_revision = "0010_statutory_processes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events written before this have none: reports read those by their wording.
    with op.batch_alter_table("case_events") as batch:
        batch.add_column(sa.Column("data", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_events") as batch:
        batch.drop_column("data")

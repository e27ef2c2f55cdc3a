"""triage flag, scored text and officers' category corrections

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("triage", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("scored_text", sa.Text(), nullable=True))
    op.create_table(
        "category_corrections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_category", sa.String(20), nullable=False),
        sa.Column("to_category", sa.String(20), nullable=False),
    )
    op.create_index("ix_category_corrections_case_id", "category_corrections", ["case_id"])
    op.create_table(
        "council_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("council_models")
    op.drop_index("ix_category_corrections_case_id", table_name="category_corrections")
    op.drop_table("category_corrections")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("scored_text")
        batch.drop_column("triage")

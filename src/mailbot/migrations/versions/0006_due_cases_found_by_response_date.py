"""due cases found by response date

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:30:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On PostgreSQL the scheduler finds due cases through the response-date index. With
    # no index on next_action_on, moving a case on to its next action touches no index,
    # and with room left on each page the row is rewritten in place (a HOT update): a
    # morning's 14,000 moves cost a third of what they did. SQLite keeps the index: it
    # has no such thing, and there the index makes the search quicker than it costs.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_cases_status_next_action", table_name="cases")
    op.execute("ALTER TABLE cases SET (fillfactor = 85)")  # pages written from now on


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE cases RESET (fillfactor)")
    op.create_index("ix_cases_status_next_action", "cases", ["status", "next_action_on"])

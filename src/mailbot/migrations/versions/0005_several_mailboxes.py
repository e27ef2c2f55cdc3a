"""several mailboxes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailbox", sa.String(length=254), nullable=True))

    # Messages were recorded under the bare folder name ("INBOX"); they are now recorded
    # under the folder's key ("account/INBOX"), as folder_state always was, so that two
    # mailboxes' INBOXes cannot be mistaken for each other. Where exactly one folder key
    # ends in the old name, that is the one; anything else is left (Message-IDs still
    # stop a message being handled twice).
    conn = op.get_bind()
    keys = [row[0] for row in conn.execute(sa.text("SELECT folder FROM folder_state"))]
    names = [row[0] for row in conn.execute(sa.text("SELECT DISTINCT folder FROM messages"))]
    for name in names:
        matches = [key for key in keys if key.endswith("/" + name)]
        if len(matches) == 1 and matches[0] != name:
            conn.execute(
                sa.text("UPDATE messages SET folder = :key WHERE folder = :name"),
                {"key": matches[0], "name": name},
            )


def downgrade() -> None:
    conn = op.get_bind()
    keys = [row[0] for row in conn.execute(sa.text("SELECT folder FROM folder_state"))]
    for key in keys:
        conn.execute(
            sa.text("UPDATE messages SET folder = :name WHERE folder = :key"),
            {"key": key, "name": key.split("/", 1)[-1]},
        )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("mailbox")

"""problems that stop mail until a person fixes them; recipients as the daily caps count them

Revision ID: 0009_failures
Revises: 0008_console
Create Date: 2026-12-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_failures"
down_revision = "0008_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "problems",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_problems_open_key",
        "problems",
        ["key"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("recipient_key", sa.String(254), nullable=True))
        batch.add_column(sa.Column("recipient_domain", sa.String(254), nullable=True))
    # The caps look acknowledgements up by recipient_key now, not by the address as given.
    op.drop_index("ix_outbox_recipient", table_name="outbox")
    op.create_index("ix_outbox_recipient_key", "outbox", ["recipient_key"])
    op.create_index("ix_outbox_recipient_domain", "outbox", ["recipient_domain", "created_at"])
    # The caps look back one day: fill in the latest acknowledgements as the daemon would.
    from mailbot.addresses import domain_of, recipient_key

    conn = op.get_bind()
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("recipient", sa.String),
        sa.column("recipient_key", sa.String),
        sa.column("recipient_domain", sa.String),
    )
    latest = (
        sa.select(outbox.c.id, outbox.c.recipient)
        .where(outbox.c.kind == "acknowledgement")
        .order_by(outbox.c.id.desc())
        .limit(5000)
    )
    for row_id, recipient in conn.execute(latest).all():
        conn.execute(
            outbox.update()
            .where(outbox.c.id == row_id)
            .values(recipient_key=recipient_key(recipient), recipient_domain=domain_of(recipient))
        )


def downgrade() -> None:
    op.drop_index("ix_outbox_recipient_domain", table_name="outbox")
    op.drop_index("ix_outbox_recipient_key", table_name="outbox")
    op.create_index("ix_outbox_recipient", "outbox", ["recipient"])
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("recipient_domain")
        batch.drop_column("recipient_key")
    op.drop_index("ix_problems_open_key", table_name="problems")
    op.drop_table("problems")

"""the reasons kept with messages and cases as {"rule", "text"} objects, not "rule: text"

Revision ID: 0014_structured_reasons
Revises: 0013_sent_copies
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014_structured_reasons"
down_revision = "0013_sent_copies"
branch_labels = None
depends_on = None

_TABLES = ("messages", "cases")
_BATCH = 1000


def upgrade() -> None:
    # Each old string is taken apart once, here, as reasons.Reason.read reads it.
    from mailbot.reasons import Reason

    _rewrite(lambda value: Reason.read(value).to_json())


def downgrade() -> None:
    from mailbot.reasons import Reason

    _rewrite(lambda value: str(Reason.read(value)))


def _rewrite(each: Callable[[Any], Any]) -> None:
    """Every row's reasons, rewritten one by one in Python (a JSON column reads and writes
    alike on SQLite and PostgreSQL), a batch of rows at a time, in id order."""
    conn = op.get_bind()
    for name in _TABLES:
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("reasons", sa.JSON))
        after = 0
        while True:
            rows = conn.execute(
                sa.select(table.c.id, table.c.reasons)
                .where(table.c.id > after)
                .order_by(table.c.id)
                .limit(_BATCH)
            ).all()
            if not rows:
                break
            changed = [
                {"row": row_id, "new": new}
                for row_id, reasons in rows
                if (new := [each(value) for value in reasons or []]) != (reasons or [])
            ]
            if changed:
                conn.execute(
                    table.update()
                    .where(table.c.id == sa.bindparam("row"))
                    .values(reasons=sa.bindparam("new", type_=sa.JSON)),
                    changed,
                )
            after = rows[-1][0]

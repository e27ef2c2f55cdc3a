"""Alembic environment: runs migrations on the URL that mailbot's config gives."""

from alembic import context

import mailbot.web.models  # noqa: F401  the console's tables, in the same metadata
from mailbot.store import Base, UTCDateTime, make_engine


def _render_item(kind: str, obj: object, autogen_context: object) -> str | bool:
    """Write our UTC datetime column as a plain timezone-aware DateTime in migrations."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _include_object(
    obj: object, name: str | None, kind: str, reflected: bool, compare_to: object
) -> bool:
    """An index made for one database only (Index.ddl_if) is not expected on the others."""
    only_on = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
    return not (kind == "index" and not reflected and only_on not in (None, _dialect))


config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
_dialect = engine.dialect.name

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=_dialect == "sqlite",  # SQLite can't ALTER most things
        render_item=_render_item,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()

engine.dispose()

"""Alembic environment: runs migrations on the URL that mailbot's config gives."""

from alembic import context

from mailbot.store import Base, UTCDateTime, make_engine


def _render_item(kind: str, obj: object, autogen_context: object) -> str | bool:
    """Write our UTC datetime column as a plain timezone-aware DateTime in migrations."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()

engine.dispose()

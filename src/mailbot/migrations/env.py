"""Alembic environment: runs migrations on the URL that mailbot's config gives."""

from alembic import context

from mailbot.store import Base, make_engine

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
    )
    with context.begin_transaction():
        context.run_migrations()

engine.dispose()

"""Alembic environment of LearnHub's database; run through :func:`hub.store.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hub.store.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through hub.store.upgrade(db_url), not the alembic CLI")
_run(connection)

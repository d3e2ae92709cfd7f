"""Alembic environment: the engine (or an open connection) comes from `task_mcp.db.migrate`."""

from alembic import context
from sqlmodel import SQLModel

import task_mcp.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    with config.attributes["engine"].connect() as conn:
        run_migrations(conn)
        conn.commit()

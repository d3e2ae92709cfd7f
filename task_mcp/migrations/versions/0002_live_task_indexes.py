"""List indexes hold live tasks only.

Counting `total` for a list then reads the index alone: with deleted_at outside the index, each
of the user's rows was visited in the table, so a list slowed down as the table grew.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIST_INDEXES = {
    "ix_tasks_owner_status_created": ["owner_id", "status", "created_at", "number", "deleted_at"],
    "ix_tasks_owner_created": ["owner_id", "created_at", "number", "deleted_at"],
    "ix_tasks_owner_status_updated": ["owner_id", "status", "updated_at", "number"],
    "ix_tasks_owner_status_priority": ["owner_id", "status", "priority", "number"],
    "ix_tasks_owner_due_at": ["owner_id", "due_at", "number"],
    "ix_tasks_owner_due_date": ["owner_id", "due_date", "number"],
}


def upgrade() -> None:
    live = sa.text("deleted_at IS NULL")
    for name, columns in LIST_INDEXES.items():
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns, sqlite_where=live, postgresql_where=live)


def downgrade() -> None:
    for name, columns in LIST_INDEXES.items():
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", [c for c in columns if c != "deleted_at"])

"""The change journal: every call that changes something is one change, with what it touched.

`changes` holds one row per change, keyed by the workspace and its `change_id` (taken from
`task_counters.last_change`, next to the task counter). `change_tasks` holds one row per task a
change touched, with only the fields it changed (before and after), and links tasks to their
changes for `list_changes task_id`. Idempotency keys remember the change they made. A partial
index serves the trash (`list_tasks status: "deleted"`). Existing tasks have no history.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_LENGTH = 300


def upgrade() -> None:
    op.add_column("task_counters", sa.Column("last_change", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("idempotency_keys", sa.Column("change_id", sa.Integer(), nullable=True))
    op.create_table(
        "changes",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tool", sa.String(40), nullable=False),
        sa.Column("by_user", sa.String(255), nullable=False),
        sa.Column("by_name", sa.String(255), nullable=True),
        sa.Column("by_client", sa.String(255), nullable=True),
        sa.Column("summary", sa.String(160), nullable=False),
        sa.Column("task_count", sa.Integer(), nullable=False),
        sa.Column("undoes", sa.Integer(), nullable=True),
        sa.Column("undone_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", "change_id"),
    )
    op.create_index("ix_changes_owner_by", "changes", ["owner_id", "by_user", "change_id"])
    op.create_index("ix_changes_at", "changes", ["at"])
    op.create_table(
        "change_tasks",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("version_before", sa.Integer(), nullable=True),
        sa.Column("version_after", sa.Integer(), nullable=False),
        sa.Column("before", sa.UnicodeText(), nullable=True),
        sa.Column("after", sa.UnicodeText(), nullable=True),
        sa.Column("deleted_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("group_before", sa.Integer(), nullable=True),
        sa.Column("group_after", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", "change_id", "number"),
    )
    op.create_index("ix_change_tasks_owner_number", "change_tasks", ["owner_id", "number", "change_id"])
    trash = sa.text("deleted_at IS NOT NULL")
    op.create_index(
        "ix_tasks_owner_trash",
        "tasks",
        ["owner_id", "deleted_at", "number"],
        sqlite_where=trash,
        postgresql_where=trash,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_trash", table_name="tasks")
    op.drop_table("change_tasks")
    op.drop_table("changes")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("change_id")
    with op.batch_alter_table("task_counters") as batch:
        batch.drop_column("last_change")

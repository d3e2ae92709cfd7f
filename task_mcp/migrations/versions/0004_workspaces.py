"""Workspaces: tasks live in a personal workspace or an organization's.

Every existing row already belongs to its owner's personal workspace: `owner_id` now holds the key
of a workspace, and a personal workspace's key is the user id itself, so no task, tag, counter or
key changes its key or its number. The keys grow room for `org:<organization id>`. Tasks gain
`created_by` (their owner, for existing rows) and `assignee` (none). Idempotency keys become per
workspace and caller: the caller of an existing key is its owner. `workspace_members` holds the
known members of each organization.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_LENGTH = 300
KEYED = ("tasks", "task_tags", "task_counters")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":  # SQLite does not enforce VARCHAR lengths
        for table in KEYED:
            op.alter_column(table, "owner_id", type_=sa.String(KEY_LENGTH), existing_nullable=False)

    op.add_column("tasks", sa.Column("created_by", sa.String(255), nullable=False, server_default=""))
    op.add_column("tasks", sa.Column("assignee", sa.String(255), nullable=True))
    op.execute("UPDATE tasks SET created_by = owner_id")
    live = sa.text("deleted_at IS NULL")
    op.create_index(
        "ix_tasks_owner_assignee", "tasks", ["owner_id", "assignee", "number"], sqlite_where=live, postgresql_where=live
    )

    # The key of a primary key changes: a new table, filled from the old one (nothing refers to it).
    op.create_table(
        "idempotency_keys_new",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("numbers", sa.String(1200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "user_id", "key", name="pk_idempotency_keys"),
    )
    op.execute(
        "INSERT INTO idempotency_keys_new (owner_id, user_id, key, request_hash, numbers, created_at) "
        "SELECT owner_id, owner_id, key, request_hash, numbers, created_at FROM idempotency_keys"
    )
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_new", "idempotency_keys")
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "user_id"),
    )
    op.create_index("ix_workspace_members_seen", "workspace_members", ["workspace_id", "last_seen_at"])
    op.create_index("ix_workspace_members_user", "workspace_members", ["user_id"])
    op.create_index("ix_workspace_members_last_seen", "workspace_members", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("workspace_members")
    op.execute("DELETE FROM idempotency_keys WHERE owner_id <> user_id")
    op.create_table(
        "idempotency_keys_old",
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("numbers", sa.String(1200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "key"),
    )
    op.execute(
        "INSERT INTO idempotency_keys_old (owner_id, key, request_hash, numbers, created_at) "
        "SELECT owner_id, key, request_hash, numbers, created_at FROM idempotency_keys"
    )
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_old", "idempotency_keys")
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.drop_index("ix_tasks_owner_assignee", table_name="tasks")
    op.drop_column("tasks", "assignee")
    op.drop_column("tasks", "created_by")

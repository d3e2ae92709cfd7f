"""Per-workspace task counts (open, completed, deleted), kept by triggers in the writing transaction.

`list_tasks` answers an exact `total`; when its filter is only a status, the total is read from
`task_counters` instead of counted over the workspace's rows. Triggers on `tasks` keep the counts,
so every write path (create, update, complete, delete, restore, purge, undo, and any added later)
changes them in its own transaction. Existing workspaces are counted once here.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("open_tasks", "completed_tasks", "deleted_tasks")

# What each count holds, for a row `r` of tasks (as 0 or 1 on both databases).
_WHICH = {
    "open_tasks": "(CASE WHEN {r}.deleted_at IS NULL AND {r}.status = 'open' THEN 1 ELSE 0 END)",
    "completed_tasks": "(CASE WHEN {r}.deleted_at IS NULL AND {r}.status = 'completed' THEN 1 ELSE 0 END)",
    "deleted_tasks": "(CASE WHEN {r}.deleted_at IS NOT NULL THEN 1 ELSE 0 END)",
}
# An update moves a task between counts only when its status or its deletion changes.
_MOVED = "OLD.status <> NEW.status OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"


def _update(sign: str, row: str) -> str:
    changes = ", ".join(f"{c} = {c} {sign} {_WHICH[c].format(r=row)}" for c in COUNTS)
    return f"UPDATE task_counters SET {changes} WHERE owner_id = {row}.owner_id"


def _moved() -> str:
    changes = ", ".join(f"{c} = {c} + {_WHICH[c].format(r='NEW')} - {_WHICH[c].format(r='OLD')}" for c in COUNTS)
    return f"UPDATE task_counters SET {changes} WHERE owner_id = NEW.owner_id"


def upgrade() -> None:
    for name in COUNTS:
        op.add_column("task_counters", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    # Every workspace with tasks has a counter row (its numbers come from it); count them once.
    backfill = ", ".join(
        f"{c} = (SELECT count(*) FROM tasks t WHERE t.owner_id = task_counters.owner_id AND "
        f"{_WHICH[c].format(r='t')} = 1)"
        for c in COUNTS
    )
    op.execute(f"UPDATE task_counters SET {backfill}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION task_counts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP = 'INSERT' THEN {_update('+', 'NEW')}; "
            f"ELSIF TG_OP = 'DELETE' THEN {_update('-', 'OLD')}; "
            f"ELSE {_moved()}; END IF; RETURN NULL; END $$"
        )
        op.execute("CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION task_counts()")
        op.execute("CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION task_counts()")
        op.execute(
            f"CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks FOR EACH ROW WHEN ({_MOVED}) "
            "EXECUTE FUNCTION task_counts()"
        )
    else:
        op.execute(f"CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN {_update('+', 'NEW')}; END")
        op.execute(f"CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN {_update('-', 'OLD')}; END")
        op.execute(
            f"CREATE TRIGGER task_counts_update AFTER UPDATE OF status, deleted_at ON tasks WHEN {_MOVED} "
            f"BEGIN {_moved()}; END"
        )


def downgrade() -> None:
    for trigger in ("task_counts_insert", "task_counts_delete", "task_counts_update"):
        op.execute(f"DROP TRIGGER {trigger}" + (" ON tasks" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION task_counts()")
    with op.batch_alter_table("task_counters") as batch:
        for name in reversed(COUNTS):
            batch.drop_column(name)

"""Per-tag task counts, kept by triggers in the writing transaction.

`list_tasks` filtered by one tag (with a status, and perhaps priorities, and nothing else) answers
its exact `total` from `tag_counts` instead of counting the tag's rows, so the total costs the same
however many tasks carry the tag. A row counts the workspace's live tasks with that tag, status and
priority. Triggers on `task_tags` keep the counts, and `task_tags` follows its task (migration
0008), so every write path (create, update, complete, delete, restore, purge, undo) changes them
in its own transaction. Existing tags are counted once here.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_LENGTH = 300  # as task_tags.owner_id

_KEY = "owner_id, tag, status, priority"
# A task_tags row `r` is counted when its task is live. On SQLite its copies are filled by an update
# just after the insert (0008), so a row whose copies are not filled yet is not counted until then.
_COUNTED = "{r}.deleted_at IS NULL AND {r}.status IS NOT NULL AND {r}.priority IS NOT NULL"
_WHERE = "owner_id = {r}.owner_id AND tag = {r}.tag AND status = {r}.status AND priority = {r}.priority"


def _add(row: str) -> str:
    # `WHERE` both decides and, on SQLite, keeps the upsert's ON CONFLICT from reading as a join.
    values = ", ".join(f"{row}.{c}" for c in _KEY.split(", "))
    return (
        f"INSERT INTO tag_counts ({_KEY}, n) SELECT {values}, 1 WHERE {_COUNTED.format(r=row)} "
        f"ON CONFLICT ({_KEY}) DO UPDATE SET n = tag_counts.n + 1"
    )


def _remove(row: str) -> str:
    return f"UPDATE tag_counts SET n = n - 1 WHERE {_WHERE.format(r=row)} AND {_COUNTED.format(r=row)}"


_MOVED = (
    "OLD.status IS {ne} NEW.status OR OLD.priority IS {ne} NEW.priority OR OLD.deleted_at IS {ne} NEW.deleted_at"
)


def upgrade() -> None:
    op.create_table(
        "tag_counts",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "tag", "status", "priority"),
    )
    op.execute(
        f"INSERT INTO tag_counts ({_KEY}, n) SELECT {_KEY}, count(*) FROM task_tags "
        f"WHERE {_COUNTED.format(r='task_tags')} GROUP BY {_KEY}"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tag_counts_kept() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP = 'INSERT' THEN {_add('NEW')}; "
            f"ELSIF TG_OP = 'DELETE' THEN {_remove('OLD')}; "
            f"ELSE {_remove('OLD')}; {_add('NEW')}; END IF; RETURN NULL; END $$"
        )
        for event in ("INSERT", "DELETE"):
            op.execute(
                f"CREATE TRIGGER tag_counts_{event.lower()} AFTER {event} ON task_tags FOR EACH ROW "
                "EXECUTE FUNCTION tag_counts_kept()"
            )
        op.execute(
            "CREATE TRIGGER tag_counts_update AFTER UPDATE OF status, priority, deleted_at ON task_tags "
            f"FOR EACH ROW WHEN ({_MOVED.format(ne='DISTINCT FROM')}) EXECUTE FUNCTION tag_counts_kept()"
        )
    else:
        op.execute(f"CREATE TRIGGER tag_counts_insert AFTER INSERT ON task_tags BEGIN {_add('NEW')}; END")
        op.execute(f"CREATE TRIGGER tag_counts_delete AFTER DELETE ON task_tags BEGIN {_remove('OLD')}; END")
        op.execute(
            "CREATE TRIGGER tag_counts_update AFTER UPDATE OF status, priority, deleted_at ON task_tags "
            f"WHEN {_MOVED.format(ne='NOT')} BEGIN {_remove('OLD')}; {_add('NEW')}; END"
        )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in ("tag_counts_insert", "tag_counts_delete", "tag_counts_update"):
        op.execute(f"DROP TRIGGER {trigger}" + (" ON task_tags" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION tag_counts_kept()")
    op.drop_table("tag_counts")

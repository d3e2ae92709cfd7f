"""Search indexes: the tag filter and the text search cost what the workspace's own rows cost.

- Tags: each `task_tags` row carries a copy of its task's list keys (status, priority, created
  number, creation time, deletion time), so a tag page in the default order and its exact total are
  a range of one index led by (workspace, tag), without visiting the tasks of other tags or
  workspaces. Triggers keep the copy equal to the task in the writing transaction, whatever
  statement changes the task (create, update, complete, delete, restore, undo, purge).
- Text: the case-folded title and description (0003) are indexed for substrings: SQLite FTS5 with
  the `trigram` tokenizer (an external-content table over `tasks`, kept in sync by triggers),
  PostgreSQL `pg_trgm` GIN indexes. The search still compares with LIKE, so both engines give the
  same answers; the index only narrows the rows to compare.

Existing rows are filled in here.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The copies in task_tags; `number` and `created_at` never change, the others through the triggers.
_COPIED = ("status", "priority", "number", "created_at", "deleted_at")
_TAG_INDEX = ("owner_id", "tag", "created_at", "number", "status", "priority", "deleted_at")

_SQLITE = [
    # Tag rows: filled from their task when inserted, updated when the task's keys change.
    f"""CREATE TRIGGER task_tags_fill AFTER INSERT ON task_tags BEGIN
      UPDATE task_tags SET ({", ".join(_COPIED)}) =
        (SELECT {", ".join(_COPIED)} FROM tasks WHERE pk = new.task_pk)
      WHERE task_pk = new.task_pk AND tag = new.tag; END""",
    """CREATE TRIGGER tasks_sync_tags AFTER UPDATE OF status, priority, deleted_at ON tasks
      WHEN old.status IS NOT new.status OR old.priority IS NOT new.priority
        OR old.deleted_at IS NOT new.deleted_at
      BEGIN UPDATE task_tags SET status = new.status, priority = new.priority, deleted_at = new.deleted_at
      WHERE task_pk = new.pk; END""",
    # Text: FTS5 trigram over the folded copies; case_sensitive because they are folded already.
    """CREATE VIRTUAL TABLE task_search USING fts5(title_folded, description_folded,
      content='tasks', content_rowid='pk', tokenize='trigram case_sensitive 1')""",
    """CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
      INSERT INTO task_search (rowid, title_folded, description_folded)
      VALUES (new.pk, new.title_folded, new.description_folded); END""",
    """CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
      INSERT INTO task_search (task_search, rowid, title_folded, description_folded)
      VALUES ('delete', old.pk, old.title_folded, old.description_folded); END""",
    """CREATE TRIGGER tasks_search_update AFTER UPDATE OF title_folded, description_folded ON tasks
      WHEN old.title_folded IS NOT new.title_folded OR old.description_folded IS NOT new.description_folded
      BEGIN
      INSERT INTO task_search (task_search, rowid, title_folded, description_folded)
      VALUES ('delete', old.pk, old.title_folded, old.description_folded);
      INSERT INTO task_search (rowid, title_folded, description_folded)
      VALUES (new.pk, new.title_folded, new.description_folded); END""",
    "INSERT INTO task_search (task_search) VALUES ('rebuild')",
]

_POSTGRES = [
    f"""CREATE FUNCTION task_tags_fill() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      SELECT {", ".join(_COPIED)} INTO {", ".join(f"NEW.{c}" for c in _COPIED)}
        FROM tasks WHERE pk = NEW.task_pk;
      RETURN NEW; END $$""",
    "CREATE TRIGGER task_tags_fill BEFORE INSERT ON task_tags FOR EACH ROW EXECUTE FUNCTION task_tags_fill()",
    """CREATE FUNCTION tasks_sync_tags() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      UPDATE task_tags SET status = NEW.status, priority = NEW.priority, deleted_at = NEW.deleted_at
        WHERE task_pk = NEW.pk;
      RETURN NULL; END $$""",
    """CREATE TRIGGER tasks_sync_tags AFTER UPDATE OF status, priority, deleted_at ON tasks FOR EACH ROW
      WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.priority IS DISTINCT FROM NEW.priority
        OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
      EXECUTE FUNCTION tasks_sync_tags()""",
    # pg_trgm is a trusted extension: a database owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
]
# The extension may live in another schema than the tables: its operator class is named in full.
_TRGM_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
)


def upgrade() -> None:
    op.add_column("task_tags", sa.Column("status", sa.String(16), nullable=True))
    op.add_column("task_tags", sa.Column("priority", sa.Integer(), nullable=True))
    op.add_column("task_tags", sa.Column("number", sa.Integer(), nullable=True))
    op.add_column("task_tags", sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("task_tags", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    columns = ", ".join(_COPIED)
    op.execute(f"UPDATE task_tags SET ({columns}) = (SELECT {columns} FROM tasks WHERE tasks.pk = task_tags.task_pk)")
    live = sa.text("deleted_at IS NULL")
    op.create_index("ix_task_tags_page", "task_tags", list(_TAG_INDEX), sqlite_where=live, postgresql_where=live)
    conn = op.get_bind()
    for statement in _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES:
        op.execute(statement)
    if conn.dialect.name == "postgresql":
        schema = conn.execute(sa.text(_TRGM_SCHEMA)).scalar_one()
        for column in ("title", "description"):
            op.execute(
                f'CREATE INDEX ix_tasks_{column}_trgm ON tasks USING gin ({column}_folded "{schema}".gin_trgm_ops)'
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("tasks_search_update", "tasks_search_delete", "tasks_search_insert"):
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP TABLE task_search")
        op.execute("DROP TRIGGER tasks_sync_tags")
        op.execute("DROP TRIGGER task_tags_fill")
    else:
        op.execute("DROP INDEX ix_tasks_description_trgm")
        op.execute("DROP INDEX ix_tasks_title_trgm")
        op.execute("DROP TRIGGER tasks_sync_tags ON tasks")
        op.execute("DROP FUNCTION tasks_sync_tags()")
        op.execute("DROP TRIGGER task_tags_fill ON task_tags")
        op.execute("DROP FUNCTION task_tags_fill()")
    op.drop_index("ix_task_tags_page", "task_tags")
    with op.batch_alter_table("task_tags") as batch:
        for name in reversed(_COPIED):
            batch.drop_column(name)

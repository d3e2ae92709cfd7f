"""SQLite's text index numbers its entries by workspace, so a search reads its workspace's entries only.

0008's FTS5 trigram index was keyed by `tasks.pk`, the order of creation across every workspace: a
common trigram's list of entries spans the whole table, and a search read all of it. Here each
workspace gets a stable integer (`task_search_spaces.space`, assigned on its first task) and an entry
is keyed `space * 2**32 + number`, so one workspace's entries are one range of keys, and the search
asks FTS5 for that range, which skips the rest of every list.

The index becomes contentless (it keeps only the trigrams: its keys no longer name a row of
`tasks`); the triggers give it the old text to remove an entry, as contentless FTS5 requires.
Existing tasks are indexed again here. PostgreSQL's pg_trgm indexes are left as they are: its
search reads the workspace's rows through them already.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = ("tasks_search_update", "tasks_search_delete", "tasks_search_insert")
_COLUMNS = "rowid, title_folded, description_folded"


def _key(row: str) -> str:
    """The entry's key for the task `row` (`new` or `old`)."""
    return f"(SELECT space FROM task_search_spaces WHERE owner_id = {row}.owner_id) * 4294967296 + {row}.number"


def _add(row: str) -> str:
    return f"INSERT INTO task_search ({_COLUMNS}) VALUES ({_key(row)}, {row}.title_folded, {row}.description_folded);"


def _remove(row: str) -> str:
    return (
        f"INSERT INTO task_search (task_search, {_COLUMNS}) "
        f"VALUES ('delete', {_key(row)}, {row}.title_folded, {row}.description_folded);"
    )


_UPGRADE = [
    # INTEGER PRIMARY KEY: the space never changes once given, VACUUM included.
    """CREATE TABLE task_search_spaces (space INTEGER PRIMARY KEY, owner_id VARCHAR(300) NOT NULL UNIQUE)""",
    "INSERT INTO task_search_spaces (owner_id) SELECT DISTINCT owner_id FROM tasks ORDER BY owner_id",
    *(f"DROP TRIGGER {trigger}" for trigger in _TRIGGERS),
    "DROP TABLE task_search",
    """CREATE VIRTUAL TABLE task_search USING fts5(title_folded, description_folded,
      content='', tokenize='trigram case_sensitive 1')""",
    f"""CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
      INSERT INTO task_search_spaces (owner_id) SELECT new.owner_id
        WHERE NOT EXISTS (SELECT 1 FROM task_search_spaces WHERE owner_id = new.owner_id);
      {_add("new")} END""",
    f"CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN {_remove('old')} END",
    f"""CREATE TRIGGER tasks_search_update AFTER UPDATE OF title_folded, description_folded ON tasks
      WHEN old.title_folded IS NOT new.title_folded OR old.description_folded IS NOT new.description_folded
      BEGIN {_remove("old")} {_add("new")} END""",
    f"""INSERT INTO task_search ({_COLUMNS})
      SELECT s.space * 4294967296 + t.number, t.title_folded, t.description_folded
      FROM tasks t JOIN task_search_spaces s ON s.owner_id = t.owner_id""",
    # One b-tree instead of the many segments a bulk insert leaves: a search looks each trigram up
    # once (with a million tasks, the search cost 1.4x what it costs with 10,000 before this).
    "INSERT INTO task_search (task_search) VALUES ('optimize')",
]

# 0008's index, keyed by tasks.pk.
_DOWNGRADE = [
    *(f"DROP TRIGGER {trigger}" for trigger in _TRIGGERS),
    "DROP TABLE task_search",
    "DROP TABLE task_search_spaces",
    """CREATE VIRTUAL TABLE task_search USING fts5(title_folded, description_folded,
      content='tasks', content_rowid='pk', tokenize='trigram case_sensitive 1')""",
    f"""CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
      INSERT INTO task_search ({_COLUMNS}) VALUES (new.pk, new.title_folded, new.description_folded); END""",
    f"""CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
      INSERT INTO task_search (task_search, {_COLUMNS})
      VALUES ('delete', old.pk, old.title_folded, old.description_folded); END""",
    f"""CREATE TRIGGER tasks_search_update AFTER UPDATE OF title_folded, description_folded ON tasks
      WHEN old.title_folded IS NOT new.title_folded OR old.description_folded IS NOT new.description_folded
      BEGIN
      INSERT INTO task_search (task_search, {_COLUMNS})
      VALUES ('delete', old.pk, old.title_folded, old.description_folded);
      INSERT INTO task_search ({_COLUMNS}) VALUES (new.pk, new.title_folded, new.description_folded); END""",
    "INSERT INTO task_search (task_search) VALUES ('rebuild')",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _DOWNGRADE:
            op.execute(statement)

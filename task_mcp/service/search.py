"""Text search (DESIGN §5): case-folded copies of title and description compared with a plain
LIKE, the same answer on every database, with a trigram index narrowing the rows it compares.

PostgreSQL's pg_trgm GIN indexes (migration 0008) serve the LIKE itself. SQLite's FTS5 trigram
index (migrations 0008 and 0010) is a table of its own: an entry's rowid is
`space * SEARCH_SPAN + number`, where `space` is its workspace's integer in `task_search_spaces`,
so one workspace's entries are one range of rowids, which FTS5 reads alone.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, UnicodeText, or_, select
from sqlalchemy.sql.elements import ColumnElement

from task_mcp.columns import KEY_LENGTH
from task_mcp.models import MAX_ID, TASKS, fold

__all__ = ["SEARCH_SPAN", "TASK_SEARCH", "TASK_SEARCH_SPACES", "text_filters"]

# SQLite only, made by the migrations (their own metadata, so never created as plain tables).
_SEARCH = MetaData()
TASK_SEARCH: Table = Table("task_search", _SEARCH, Column("rowid", Integer), Column("task_search", UnicodeText()))
TASK_SEARCH_SPACES: Table = Table(
    "task_search_spaces", _SEARCH, Column("space", Integer), Column("owner_id", String(KEY_LENGTH))
)
SEARCH_SPAN = 2**32  # above every task number (MAX_ID)

_T = TASKS.c
_SPACES = TASK_SEARCH_SPACES.c


def text_filters(conn: Connection, owner: str, text: str) -> list[ColumnElement[bool]]:
    """The conditions that keep the workspace's tasks whose title or description contains `text`."""
    needle = fold(text)
    columns: list[ColumnElement[str]] = [_T.title_folded, _T.description_folded]
    if len(needle) < 3:
        # No trigram in it: PostgreSQL's pg_trgm index would be read whole, every workspace's
        # rows. Compared as expressions, the columns leave it aside for the workspace's rows.
        columns = [c.concat("") for c in columns]
    where = [or_(*(c.contains(needle, autoescape=True) for c in columns))]
    if len(needle) >= 3 and conn.dialect.name == "sqlite":
        # A phrase of trigrams is a substring: the index finds the same rows the LIKE keeps.
        phrase = '"' + needle.replace('"', '""') + '"'
        space = select(_SPACES.space).where(_SPACES.owner_id == owner).scalar_subquery()
        rowid = TASK_SEARCH.c.rowid
        found = select(rowid % SEARCH_SPAN).where(
            TASK_SEARCH.c.task_search.op("MATCH")(phrase),
            rowid.between(space * SEARCH_SPAN, space * SEARCH_SPAN + MAX_ID),
        )
        where.append(_T.number.in_(found))
    return where

"""Per-tag counts behind list_tasks' `total` for a tag filter (migration 0012).

`tag_counts` holds, for each workspace, tag, status and priority, how many live tasks carry the
tag; triggers on `task_tags` keep it in the writing transaction. A total is the sum of a few of its
rows, whatever the number of tasks with the tag.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, select

__all__ = ["TAG_COUNTS", "tag_total"]

# Made by the migration (its own metadata, so never created as a plain table).
TAG_COUNTS: Table = Table(
    "tag_counts",
    MetaData(),
    Column("owner_id", String),
    Column("tag", String),
    Column("status", String),
    Column("priority", Integer),
    Column("n", Integer),
)
_C = TAG_COUNTS.c


def tag_total(conn: Connection, owner: str, tag: str, status: str, priorities: Sequence[int]) -> int:
    """The workspace's live tasks with `tag`, `status` (open, completed or all) and one of
    `priorities` (any priority when empty)."""
    stmt = select(func.coalesce(func.sum(_C.n), 0)).where(_C.owner_id == owner, _C.tag == tag)
    if status != "all":
        stmt = stmt.where(_C.status == status)
    if priorities:
        stmt = stmt.where(_C.priority.in_(priorities))
    return int(conn.execute(stmt).scalar_one())

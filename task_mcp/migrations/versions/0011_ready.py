"""Indexes for the ready list and claim_task (DESIGN §10).

A ready page (and claim_task's pick) reads three streams in claim order: instant dues, date dues and
undated tasks, each by priority (highest first), its due, then id. Each stream gets a partial index
in exactly that order, so a page reads its own rows and stops, instead of sorting a priority's
rows. The live claims get an index of their own, so the ready total subtracts the tasks held back
(by an open blocker or a live claim) without visiting every open task.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "deleted_at IS NULL"
READY_INDEXES = {
    "ix_tasks_ready_due_at": (["due_at", "number"], f"{_LIVE} AND due_at IS NOT NULL"),
    "ix_tasks_ready_due_date": (["due_date", "number"], f"{_LIVE} AND due_date IS NOT NULL"),
    "ix_tasks_ready_undated": (["number"], f"{_LIVE} AND due_at IS NULL AND due_date IS NULL"),
}


def upgrade() -> None:
    for name, (columns, where) in READY_INDEXES.items():
        keys = ["owner_id", "status", sa.text("priority DESC"), *columns]
        op.create_index(name, "tasks", keys, sqlite_where=sa.text(where), postgresql_where=sa.text(where))
    claimed = sa.text("claim_until IS NOT NULL")
    op.create_index(
        "ix_tasks_owner_claim", "tasks", ["owner_id", "claim_until"], sqlite_where=claimed, postgresql_where=claimed
    )


def downgrade() -> None:
    for name in (*READY_INDEXES, "ix_tasks_owner_claim"):
        op.drop_index(name, table_name="tasks")

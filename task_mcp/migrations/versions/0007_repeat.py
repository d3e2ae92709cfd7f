"""Repeating tasks (DESIGN §11): the rule, its time zone and the series start of each task.

`repeat` is the normalized RRULE, `repeat_timezone` the IANA zone a datetime due keeps its local
time in, and the series start is stored like `due` (an instant in `repeat_start_at` or a date in
`repeat_start_date`), so COUNT is counted from it whatever `due` becomes later.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("repeat", sa.String(500), nullable=True))
    op.add_column("tasks", sa.Column("repeat_timezone", sa.String(64), nullable=True))
    op.add_column("tasks", sa.Column("repeat_start_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("repeat_start_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name in ("repeat_start_date", "repeat_start_at", "repeat_timezone", "repeat"):
            batch.drop_column(name)

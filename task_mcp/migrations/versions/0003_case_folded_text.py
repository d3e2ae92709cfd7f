"""Case-folded copies of title and description, for a text search that agrees on every database.

SQLite's LIKE folds ASCII letters only and PostgreSQL's ILIKE folds by the database's locale, so
"İstanbul" or "École" matched differently on the two. The copies are `str.casefold()` computed in
Python and searched with a plain LIKE. Existing rows are filled in here; their ids do not change.

Revision ID: 0003
Revises: 0002
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def fold(value: str | None) -> str:
    # As models.fold at this revision (kept here, so this migration never changes meaning).
    return "" if value is None else unicodedata.normalize("NFC", value.casefold()).replace("i\u0307", "i")


def upgrade() -> None:
    for name in ("title_folded", "description_folded"):
        op.add_column("tasks", sa.Column(name, sa.UnicodeText(), nullable=False, server_default=""))
    tasks = sa.table(
        "tasks",
        sa.column("pk", sa.Integer),
        sa.column("title", sa.String),
        sa.column("description", sa.String),
        sa.column("title_folded", sa.UnicodeText),
        sa.column("description_folded", sa.UnicodeText),
    )
    conn = op.get_bind()
    fill = (
        sa.update(tasks)
        .where(tasks.c.pk == sa.bindparam("task_pk"))
        .values(title_folded=sa.bindparam("t"), description_folded=sa.bindparam("d"))
    )
    last = 0
    while True:
        batch = conn.execute(
            sa.select(tasks.c.pk, tasks.c.title, tasks.c.description)
            .where(tasks.c.pk > last)
            .order_by(tasks.c.pk)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        conn.execute(
            fill,
            [
                {"task_pk": pk, "t": fold(title), "d": fold(description)}
                for pk, title, description in batch
            ],
        )
        last = batch[-1][0]


def downgrade() -> None:
    for name in ("description_folded", "title_folded"):
        op.drop_column("tasks", name)

"""Agent coordination: blocker links, claims and notes (DESIGN §10).

`task_links` holds who blocks whom (`tasks.blocked_by` mirrors it for output and the journal),
claims live in four columns of `tasks` (live while `claim_until` is in the future), and
`task_notes` holds the append-only notes, numbered per workspace.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_LENGTH = 300


def upgrade() -> None:
    op.add_column("tasks", sa.Column("blocked_by", sa.String(600), nullable=False, server_default=""))
    op.add_column("tasks", sa.Column("claim_id", sa.String(64), nullable=True))
    op.add_column("tasks", sa.Column("claim_user", sa.String(255), nullable=True))
    op.add_column("tasks", sa.Column("claim_client", sa.String(255), nullable=True))
    op.add_column("tasks", sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "task_links",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("blocker", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "number", "blocker"),
    )
    op.create_index("ix_task_links_blocker", "task_links", ["owner_id", "blocker", "number"])
    op.create_table(
        "task_notes",
        sa.Column("owner_id", sa.String(KEY_LENGTH), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_user", sa.String(255), nullable=False),
        sa.Column("by_name", sa.String(255), nullable=True),
        sa.Column("by_client", sa.String(255), nullable=True),
        sa.Column("text", sa.UnicodeText(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("owner_id", "note_id"),
    )
    op.create_index("ix_task_notes_task", "task_notes", ["owner_id", "number", "note_id"])


def downgrade() -> None:
    op.drop_table("task_notes")
    op.drop_table("task_links")
    with op.batch_alter_table("tasks") as batch:
        for name in ("claim_until", "claim_client", "claim_user", "claim_id", "blocked_by"):
            batch.drop_column(name)

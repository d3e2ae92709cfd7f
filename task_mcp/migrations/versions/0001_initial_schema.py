"""initial schema

Revision ID: 0001
Revises: 

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('idempotency_keys',
    sa.Column('owner_id', sa.String(length=255), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('numbers', sa.String(length=1200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner_id', 'key')
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'], unique=False)

    op.create_table('task_counters',
    sa.Column('owner_id', sa.String(length=255), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('owner_id')
    )
    op.create_table('tasks',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.String(length=255), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=8000), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('tags', sa.String(length=1000), nullable=False),
    sa.Column('parent_number', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_with', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('owner_id', 'number', name='uq_tasks_owner_number')
    )
    op.create_index('ix_tasks_deleted_at', 'tasks', ['deleted_at'], unique=False)
    op.create_index('ix_tasks_owner_created', 'tasks', ['owner_id', 'created_at', 'number'], unique=False)
    op.create_index('ix_tasks_owner_due_at', 'tasks', ['owner_id', 'due_at', 'number'], unique=False)
    op.create_index('ix_tasks_owner_due_date', 'tasks', ['owner_id', 'due_date', 'number'], unique=False)
    op.create_index('ix_tasks_owner_parent', 'tasks', ['owner_id', 'parent_number'], unique=False)
    op.create_index('ix_tasks_owner_status_created', 'tasks', ['owner_id', 'status', 'created_at', 'number'], unique=False)
    op.create_index('ix_tasks_owner_status_priority', 'tasks', ['owner_id', 'status', 'priority', 'number'], unique=False)
    op.create_index('ix_tasks_owner_status_updated', 'tasks', ['owner_id', 'status', 'updated_at', 'number'], unique=False)

    op.create_table('task_tags',
    sa.Column('task_pk', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=40), nullable=False),
    sa.Column('owner_id', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['task_pk'], ['tasks.pk'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_pk', 'tag')
    )
    op.create_index('ix_task_tags_owner_tag', 'task_tags', ['owner_id', 'tag', 'task_pk'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_task_tags_owner_tag')

    op.drop_table('task_tags')
    op.drop_index('ix_tasks_owner_status_updated')
    op.drop_index('ix_tasks_owner_status_priority')
    op.drop_index('ix_tasks_owner_status_created')
    op.drop_index('ix_tasks_owner_parent')
    op.drop_index('ix_tasks_owner_due_date')
    op.drop_index('ix_tasks_owner_due_at')
    op.drop_index('ix_tasks_owner_created')
    op.drop_index('ix_tasks_deleted_at')

    op.drop_table('tasks')
    op.drop_table('task_counters')
    op.drop_index('ix_idempotency_keys_created_at')

    op.drop_table('idempotency_keys')

"""pausing a workflow: when, by whom, why, and whether manual fires are refused too

Revision ID: d8b2f6a4e1c9
Revises: a7d3e9f1c5b8
Create Date: 2026-12-06 22:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'd8b2f6a4e1c9'
down_revision = 'a7d3e9f1c5b8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('pause_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('pause_triggers', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        for column in ('pause_triggers', 'pause_note', 'paused_by', 'paused_at'):
            batch_op.drop_column(column)

"""exactly once across a fleet

A workflow's choice when its run's worker host is lost (retry or wait); the clock offset each
worker process measured against the database.

Revision ID: f3a7c9e1b2d4
Revises: e2b8f4a6c1d3
Create Date: 2026-12-05 18:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'f3a7c9e1b2d4'
down_revision = 'e2b8f4a6c1d3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_host_lost', sa.String(length=5), server_default='retry', nullable=False))
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clock_offset_ms', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.drop_column('clock_offset_ms')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('on_host_lost')

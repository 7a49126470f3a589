"""worker hosts and pools

The engine host of each run, the worker processes' heartbeats, the worker pool of workflows and runs.

Revision ID: e2b8f4a6c1d3
Revises: d5f1a9c3e2b7
Create Date: 2026-12-01 03:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'e2b8f4a6c1d3'
down_revision = 'd5f1a9c3e2b7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'worker_processes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('host', sa.String(length=200), nullable=False),
        sa.Column('pools', sa.String(length=500), nullable=False),
        sa.Column('slots', sa.Integer(), nullable=False),
        sa.Column('engine_version', sa.String(length=50), nullable=True),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('stopped_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_processes')),
        sa.UniqueConstraint('name', name=op.f('uq_worker_processes_name')),
    )
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_processes_host'), ['host'], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker_host', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('worker_pool', sa.String(length=40), server_default='default', nullable=False))
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker_pool', sa.String(length=40), server_default='default', nullable=False))


def downgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('worker_pool')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('worker_pool')
        batch_op.drop_column('worker_host')
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_processes_host'))
    op.drop_table('worker_processes')

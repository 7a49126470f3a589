"""team quotas and pool owners

A team's overrides of the installation's quota defaults; when a workflow's fires began to be
skipped for a full queue (one workflow.missed per stretch); runs counted per team and status;
the worker pools granted to teams; why a worker could not install the egress rules.

Revision ID: a6d2e8c4f1b9
Revises: f3a7c9e1b2d4
Create Date: 2026-12-05 22:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a6d2e8c4f1b9'
down_revision = 'f3a7c9e1b2d4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('limits', sa.JSON(), nullable=True))
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue_full_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('read_only_rootfs', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index('ix_runs_team_status', 'runs', ['team_id', 'status'])
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('egress_problem', sa.Text(), nullable=True))
    op.create_table('pool_grants',
                    sa.Column('pool', sa.String(length=40), nullable=False),
                    sa.Column('team_id', sa.Integer(), nullable=False),
                    sa.Column('created_at', sa.DateTime(), nullable=False),
                    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('pool', 'team_id'))


def downgrade():
    op.drop_table('pool_grants')
    with op.batch_alter_table('worker_processes', schema=None) as batch_op:
        batch_op.drop_column('egress_problem')
    op.drop_index('ix_runs_team_status', table_name='runs')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('read_only_rootfs')
        batch_op.drop_column('queue_full_at')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('limits')

"""chains: a workflow runs after the runs of its upstream workflows (workflow_edges), and a chain
run names the upstream run that fired it, once per downstream workflow

Revision ID: f6a9c2e5d8b1
Revises: e4c7a1f9b3d2
Create Date: 2026-12-06 23:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'f6a9c2e5d8b1'
down_revision = 'e4c7a1f9b3d2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'workflow_edges',
        sa.Column('downstream_id', sa.Integer(), nullable=False),
        sa.Column('upstream_id', sa.Integer(), nullable=False),
        sa.Column('on_state', sa.String(length=10), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['downstream_id'], ['workflows.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['upstream_id'], ['workflows.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('downstream_id', 'upstream_id'),
    )
    op.create_index('ix_workflow_edges_upstream_id', 'workflow_edges', ['upstream_id'])
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_join', sa.String(length=3), nullable=False, server_default='any'))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('triggered_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_runs_triggered_by_id_runs', 'runs', ['triggered_by_id'], ['id'])
        batch_op.create_unique_constraint('uq_runs_workflow_triggered_by', ['workflow_id', 'triggered_by_id'])
        batch_op.create_index('ix_runs_triggered_by', ['triggered_by_id'])


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_triggered_by')
        batch_op.drop_constraint('uq_runs_workflow_triggered_by', type_='unique')
        batch_op.drop_constraint('fk_runs_triggered_by_id_runs', type_='foreignkey')
        batch_op.drop_column('triggered_by_id')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('chain_join')
    op.drop_index('ix_workflow_edges_upstream_id', table_name='workflow_edges')
    op.drop_table('workflow_edges')

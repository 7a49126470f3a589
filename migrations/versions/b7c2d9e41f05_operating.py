"""operating: silent-workflow alerts, last success, events without a run, the metrics index

Revision ID: b7c2d9e41f05
Revises: af4f1b59c4a4
Create Date: 2026-11-30 17:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'b7c2d9e41f05'
down_revision = 'af4f1b59c4a4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expect_success_within_sec', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('expect_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('silent_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_success_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('run_id', existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_workflow_finished', ['workflow_id', 'finished_at'], unique=False)
    op.create_table('run_counts',
                    sa.Column('workflow_id', sa.Integer(), nullable=False),
                    sa.Column('status', sa.String(length=10), nullable=False),
                    sa.Column('trigger', sa.String(length=10), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('workflow_id', 'status', 'trigger'))
    op.execute("INSERT INTO run_counts (workflow_id, status, \"trigger\", n) SELECT workflow_id, status, "
               "\"trigger\", count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out') "
               "GROUP BY workflow_id, status, \"trigger\"")
    op.execute("UPDATE workflows SET last_success_at = (SELECT max(r.finished_at) FROM runs r "
               "WHERE r.workflow_id = workflows.id AND r.status = 'succeeded')")


def downgrade():
    op.drop_table('run_counts')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_workflow_finished')
    op.execute("DELETE FROM events WHERE run_id IS NULL")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('run_id', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('last_success_at')
        batch_op.drop_column('silent_at')
        batch_op.drop_column('expect_since')
        batch_op.drop_column('expect_success_within_sec')

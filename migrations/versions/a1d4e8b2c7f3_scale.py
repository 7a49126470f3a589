"""scale: indexes for lookups by a foreign key (a run's retries, a workflow's events, a notification's
deliveries); stored output compressed (a block's `packed` payload, `text` null then); retention
(a run's log_pruned_at, a team's runs_pruned_before, and the indexes that find what is past it)

Revision ID: a1d4e8b2c7f3
Revises: e7c2a9d4b6f1
Create Date: 2026-12-07 08:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a1d4e8b2c7f3'
down_revision = 'e7c2a9d4b6f1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_runs_retry_of', 'runs', ['retry_of_id'], unique=False)
    op.create_index(op.f('ix_events_workflow_id'), 'events', ['workflow_id'], unique=False)
    op.create_index(op.f('ix_notification_deliveries_notification_id'), 'notification_deliveries',
                    ['notification_id'], unique=False)
    with op.batch_alter_table('run_log_blocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('packed', sa.LargeBinary(), nullable=True))
        batch_op.alter_column('text', existing_type=sa.Text(), nullable=True)
    op.add_column('runs', sa.Column('log_pruned_at', sa.DateTime(), nullable=True))
    op.add_column('teams', sa.Column('runs_pruned_before', sa.DateTime(), nullable=True))
    op.create_index(op.f('ix_notifications_event_id'), 'notifications', ['event_id'], unique=False)
    op.create_index(op.f('ix_notification_deliveries_event_id'), 'notification_deliveries', ['event_id'],
                    unique=False)
    op.create_index('ix_runs_team_finished', 'runs', ['team_id', 'finished_at'], unique=False)
    op.create_index('ix_runs_team_finished_output_kept', 'runs', ['team_id', 'finished_at'], unique=False,
                    postgresql_where=sa.text('log_pruned_at IS NULL'), sqlite_where=sa.text('log_pruned_at IS NULL'))


def downgrade():
    op.drop_index(op.f('ix_notification_deliveries_event_id'), table_name='notification_deliveries')
    op.drop_index(op.f('ix_notifications_event_id'), table_name='notifications')
    op.drop_index('ix_runs_team_finished_output_kept', table_name='runs')
    op.drop_index('ix_runs_team_finished', table_name='runs')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('runs_pruned_before')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('log_pruned_at')
    # packed blocks cannot go back to a text-only table: refuse rather than lose output
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM run_log_blocks WHERE packed IS NOT NULL LIMIT 1")).first():
        raise RuntimeError("run_log_blocks holds compressed output: this downgrade would lose it")
    with op.batch_alter_table('run_log_blocks', schema=None) as batch_op:
        batch_op.alter_column('text', existing_type=sa.Text(), nullable=False)
        batch_op.drop_column('packed')
    op.drop_index(op.f('ix_notification_deliveries_notification_id'), table_name='notification_deliveries')
    op.drop_index(op.f('ix_events_workflow_id'), table_name='events')
    op.drop_index('ix_runs_retry_of', table_name='runs')

"""catch-up window per workflow, backfills of past schedule instants, and an event's detail

Revision ID: b8e3d1f7a2c6
Revises: a2c8e4f6b9d3
Create Date: 2026-12-07 01:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'b8e3d1f7a2c6'
down_revision = 'a2c8e4f6b9d3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'backfills',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('workflow_id', sa.Integer(), nullable=False),
        sa.Column('schedule', sa.String(length=200), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('from_at', sa.DateTime(), nullable=False),
        sa.Column('to_at', sa.DateTime(), nullable=False),
        sa.Column('max_concurrent', sa.Integer(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('made', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('next_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=True),
        sa.Column('cancelled_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('public_id'),
    )
    op.create_index('ix_backfills_workflow_id', 'backfills', ['workflow_id'])
    op.create_index('ix_backfills_next_at', 'backfills', ['next_at'])
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('catch_up_window_sec', sa.Integer(), nullable=True))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail', sa.Text(), nullable=True))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backfill_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_runs_backfill_id_backfills', 'backfills', ['backfill_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_runs_backfill_status', ['backfill_id', 'status'])


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_backfill_status')
        batch_op.drop_constraint('fk_runs_backfill_id_backfills', type_='foreignkey')
        batch_op.drop_column('backfill_id')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('detail')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('catch_up_window_sec')
    op.drop_index('ix_backfills_next_at', table_name='backfills')
    op.drop_index('ix_backfills_workflow_id', table_name='backfills')
    op.drop_table('backfills')

"""when a run's counted output was last read, on its engine's clock

A re-attach skips the bytes already read, counted from the start of the engine's log; this time
tells it where the json-file driver rotated the head of that log away (jobs/runner.py _read).

Revision ID: c9d4e7a2b8f6
Revises: a6d2e8c4f1b9
Create Date: 2026-12-06 04:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'c9d4e7a2b8f6'
down_revision = 'a6d2e8c4f1b9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output_read_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('output_read_at')

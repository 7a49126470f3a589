"""a notification channel's permanent failures in a row and its last error

A channel whose endpoint refuses its messages for good CHANNEL_DISABLE_AFTER times in a row is
disabled (disabled_at), with the error shown, until a member enables it again.

Revision ID: b3e6f2a9d7c1
Revises: c9d4e7a2b8f6
Create Date: 2026-12-06 08:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'b3e6f2a9d7c1'
down_revision = 'c9d4e7a2b8f6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures_in_a_row', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('last_error_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.drop_column('last_error_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('failures_in_a_row')

"""one notification in flight per team, held by the database

Revision ID: c4e8a2d7f913
Revises: b7c2d9e41f05
Create Date: 2026-11-30 20:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'c4e8a2d7f913'
down_revision = 'b7c2d9e41f05'
branch_labels = None
depends_on = None


def upgrade():
    # Two claims that raced before this index existed may have left a team with two rows in
    # flight: all but the oldest go back to pending (the sweep hands them over again).
    op.execute("UPDATE notifications SET state = 'pending', claimed_at = NULL, enqueued_at = NULL "
               "WHERE state = 'sending' AND id NOT IN "
               "(SELECT min(id) FROM notifications WHERE state = 'sending' GROUP BY team_id)")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('uq_notifications_one_sending_per_team', ['team_id'], unique=True,
                              postgresql_where=sa.text("state = 'sending'"),
                              sqlite_where=sa.text("state = 'sending'"))


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('uq_notifications_one_sending_per_team')

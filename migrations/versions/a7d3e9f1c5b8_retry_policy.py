"""a workflow's retry policy, and why each failed run was or was not retried

Revision ID: a7d3e9f1c5b8
Revises: b3e6f2a9d7c1
Create Date: 2026-12-06 22:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a7d3e9f1c5b8'
down_revision = 'b3e6f2a9d7c1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_policy', sa.JSON(), nullable=True))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_decision', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('retry_decision')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('retry_policy')

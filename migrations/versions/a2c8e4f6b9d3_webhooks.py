"""inbound webhooks: a workflow's hook (only its token's hash), and a webhook run's payload

Revision ID: a2c8e4f6b9d3
Revises: f6a9c2e5d8b1
Create Date: 2026-12-06 23:50:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'a2c8e4f6b9d3'
down_revision = 'f6a9c2e5d8b1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'workflow_hooks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('workflow_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('token_prefix', sa.String(length=16), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash', name='uq_workflow_hooks_token_hash'),
        sa.UniqueConstraint('workflow_id', name='uq_workflow_hooks_workflow_id'),
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.LargeBinary(), nullable=True))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('payload')
    op.drop_table('workflow_hooks')

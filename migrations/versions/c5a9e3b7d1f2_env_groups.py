"""env groups: a team's named, versioned sets of env entries; the groups a workflow uses and the
versions a run used

Revision ID: c5a9e3b7d1f2
Revises: b8e3d1f7a2c6
Create Date: 2026-12-07 02:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'c5a9e3b7d1f2'
down_revision = 'b8e3d1f7a2c6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'env_groups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('deleted_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('uq_env_groups_team_name_live', 'env_groups', ['team_id', 'name'], unique=True,
                    sqlite_where=sa.text('deleted_at IS NULL'), postgresql_where=sa.text('deleted_at IS NULL'))
    op.create_table(
        'env_group_versions',
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('entries', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['group_id'], ['env_groups.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'version'),
    )
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('env_group_ids', sa.JSON(), nullable=True))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('env_groups', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('env_groups')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('env_group_ids')
    op.drop_table('env_group_versions')
    op.drop_index('uq_env_groups_team_name_live', table_name='env_groups')
    op.drop_table('env_groups')

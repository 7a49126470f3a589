"""scale: a team's runs newest first (the Runs tab of a quiet team among busy ones walked every
other team's newer runs)

Revision ID: c9d3e7a1f5b8
Revises: a1d4e8b2c7f3
Create Date: 2026-12-07 16:00:00

"""
from alembic import op

revision = 'c9d3e7a1f5b8'
down_revision = 'a1d4e8b2c7f3'
branch_labels = None
depends_on = None


def upgrade():
    # CONCURRENTLY on PostgreSQL: runs keep being written while a large table is indexed
    with op.get_context().autocommit_block():
        op.create_index('ix_runs_team_newest', 'runs', ['team_id', 'id'], unique=False,
                        postgresql_concurrently=True)


def downgrade():
    with op.get_context().autocommit_block():
        op.drop_index('ix_runs_team_newest', table_name='runs', postgresql_concurrently=True)

"""roles and the audit log: an API key's role (from its scope) and its maker; audit_log; invitations; single sign-on (a user's subject, group maps)

Revision ID: e7c2a9d4b6f1
Revises: d6b1f8c3a9e4
Create Date: 2026-12-07 05:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'e7c2a9d4b6f1'
down_revision = 'd6b1f8c3a9e4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('created_by_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_keys_created_by_id'), ['created_by_id'], unique=False)
        batch_op.create_foreign_key('fk_api_keys_created_by_id_users', 'users', ['created_by_id'], ['id'],
                                    ondelete='SET NULL')
    op.execute("UPDATE api_keys SET role = CASE scope WHEN 'read' THEN 'viewer' ELSE 'admin' END")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=10), nullable=False)
        batch_op.drop_column('scope')
    op.create_table(
        'audit_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('actor_user_id', sa.Integer(), nullable=True),
        sa.Column('actor_key_id', sa.Integer(), nullable=True),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=300), nullable=True),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('target_type', sa.String(length=40), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.Column('diff', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_audit_log_team_id_teams'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)
    op.create_index('ix_audit_log_team_id_id', 'audit_log', ['team_id', 'id'], unique=False)
    op.create_index('ix_audit_log_team_id_action_id', 'audit_log', ['team_id', 'action', 'id'], unique=False)
    op.create_table(
        'invitations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('accepted_at', sa.DateTime(), nullable=True),
        sa.Column('accepted_by_id', sa.Integer(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_invitations_team_id_teams'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['accepted_by_id'], ['users.id'], name=op.f('fk_invitations_accepted_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_invitations_token_hash')),
    )
    op.create_index(op.f('ix_invitations_team_id'), 'invitations', ['team_id'], unique=False)
    op.create_table(
        'sso_group_maps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('group', sa.String(length=200), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_sso_group_maps_team_id_teams'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_group_maps')),
        sa.UniqueConstraint('group', 'team_id', name=op.f('uq_sso_group_maps_group_team_id')),
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sso_subject', sa.String(length=400), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_users_sso_subject'), ['sso_subject'])
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('via_sso', sa.Boolean(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('via_sso')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_sso_subject'), type_='unique')
        batch_op.drop_column('sso_subject')
    op.drop_table('sso_group_maps')
    op.drop_table('invitations')
    op.drop_table('audit_log')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=10), nullable=True))
    op.execute("UPDATE api_keys SET scope = CASE role WHEN 'viewer' THEN 'read' ELSE 'full' END")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('scope', existing_type=sa.String(length=10), nullable=False)
        batch_op.drop_constraint('fk_api_keys_created_by_id_users', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_keys_created_by_id'))
        batch_op.drop_column('created_by_id')
        batch_op.drop_column('role')

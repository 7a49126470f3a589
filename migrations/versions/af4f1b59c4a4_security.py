"""security: session versions, run networks, env encrypted at rest

Revision ID: af4f1b59c4a4
Revises: a1b71df7c65e
Create Date: 2026-11-30 15:50:00

"""
import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'af4f1b59c4a4'
down_revision = 'a1b71df7c65e'
branch_labels = None
depends_on = None

BATCH = 1000


def _reencode(table: str, source, target) -> None:
    """Copy `env` of every row to `env_new`, rewritten by `target(source(value))`, in batches."""
    conn = op.get_bind()
    t = sa.table(table, sa.column("id", sa.Integer), sa.column("env", sa.LargeBinary),
                 sa.column("env_new", sa.LargeBinary))
    last = 0
    while True:
        rows = conn.execute(sa.select(t.c.id, t.c.env).where(t.c.id > last).order_by(t.c.id).limit(BATCH)).all()
        if not rows:
            return
        for row_id, value in rows:
            conn.execute(t.update().where(t.c.id == row_id).values(env_new=target(source(value))))
        last = rows[-1][0]


def _plain(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode()
    return json.loads(value) if isinstance(value, str) else value


def upgrade():
    from webapp.crypto import encrypt
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('network', sa.String(length=10), server_default='bridge', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('network', sa.String(length=10), server_default='bridge', nullable=False))
    # env: JSON text -> encrypted JSON (a new column, filled, then put in the old one's place)
    for table in ('workflows', 'runs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('env_new', sa.LargeBinary(), nullable=True))
        _reencode(table, _plain, lambda env: encrypt(json.dumps(env)))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('env')
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('env_new', new_column_name='env', existing_type=sa.LargeBinary(), nullable=False)



def downgrade():
    from webapp.crypto import decrypt
    for table in ('workflows', 'runs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('env_new', sa.JSON(), nullable=True))
        conn = op.get_bind()
        t = sa.table(table, sa.column("id", sa.Integer), sa.column("env", sa.LargeBinary),
                     sa.column("env_new", sa.JSON))
        for row_id, value in conn.execute(sa.select(t.c.id, t.c.env)).all():
            conn.execute(t.update().where(t.c.id == row_id).values(env_new=json.loads(decrypt(bytes(value)))))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('env')
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('env_new', new_column_name='env', existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('network')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('network')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')

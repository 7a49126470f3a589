"""run output stored in blocks of lines instead of a row per line

Revision ID: d5f1a9c3e2b7
Revises: c4e8a2d7f913
Create Date: 2026-11-30 23:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'd5f1a9c3e2b7'
down_revision = 'c4e8a2d7f913'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('run_log_blocks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('first_seq', sa.Integer(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=6), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_log_blocks_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_log_blocks')),
    sa.UniqueConstraint('run_id', 'last_seq', name='uq_run_log_blocks_run_last_seq')
    )
    # Every stored line becomes a block of one line: nothing is lost, and old runs read as before.
    op.execute("INSERT INTO run_log_blocks (run_id, first_seq, last_seq, stream, text, ts) "
               "SELECT run_id, seq, seq, stream, text, ts FROM run_log_chunks ORDER BY run_id, seq")
    op.drop_table('run_log_chunks')


def downgrade():
    chunks = op.create_table('run_log_chunks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=6), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_log_chunks_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_log_chunks')),
    sa.UniqueConstraint('run_id', 'seq', name='uq_run_log_chunks_run_seq')
    )
    stored = sa.table('run_log_blocks', sa.column('id', sa.Integer), sa.column('run_id', sa.Integer),
                      sa.column('first_seq', sa.Integer), sa.column('stream', sa.String),
                      sa.column('text', sa.Text), sa.column('ts', sa.DateTime))
    conn = op.get_bind()
    last_id = 0
    while True:  # a page of blocks at a time, each split back into its lines
        blocks = conn.execute(sa.select(stored).where(stored.c.id > last_id).order_by(stored.c.id).limit(1000)).all()
        if not blocks:
            break
        last_id = blocks[-1].id
        op.bulk_insert(chunks, [{"run_id": b.run_id, "seq": b.first_seq + i, "stream": b.stream, "text": line,
                                 "ts": b.ts} for b in blocks for i, line in enumerate(b.text.split("\n"))])
    op.drop_table('run_log_blocks')

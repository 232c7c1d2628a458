"""IAM adapters: vendor attempts and exception expiries

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('iam_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('proposal_id', sa.String(length=64), nullable=False),
    sa.Column('adapter', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', JSON, nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.Column('next_attempt_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_iam_attempts'))
    )
    with op.batch_alter_table('iam_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_iam_attempts_key'), ['key'], unique=False)
    op.create_table('iam_expiries',
    sa.Column('proposal_id', sa.String(length=64), nullable=False),
    sa.Column('adapter', sa.String(length=32), nullable=False),
    sa.Column('request', JSON, nullable=False),
    sa.Column('due_ms', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_ms', sa.BigInteger(), nullable=True),
    sa.Column('done_ms', sa.BigInteger(), nullable=True),
    sa.Column('result', JSON, nullable=True),
    sa.PrimaryKeyConstraint('proposal_id', name=op.f('pk_iam_expiries'))
    )
    with op.batch_alter_table('iam_expiries', schema=None) as batch_op:
        batch_op.create_index('ix_iam_expiries_status_due', ['status', 'due_ms'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('iam_expiries', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_expiries_status_due')
    op.drop_table('iam_expiries')
    with op.batch_alter_table('iam_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_iam_attempts_key'))
    op.drop_table('iam_attempts')

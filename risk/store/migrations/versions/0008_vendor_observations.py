"""vendor observations and ingest cursors (decisions glassgate did not make)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('vendor_observations',
    sa.Column('decision_id', sa.String(length=64), nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('vendor_event_id', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.String(length=128), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('failure', sa.Boolean(), nullable=False),
    sa.Column('rule', sa.String(length=300), server_default='', nullable=False),
    sa.Column('agreement', sa.String(length=16), nullable=False),
    sa.Column('observed', JSON, nullable=False),
    sa.Column('raw_hash', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_vendor_observations')),
    sa.UniqueConstraint('vendor', 'vendor_event_id', name='uq_vendor_observations_vendor_event')
    )
    op.create_index('ix_vendor_observations_user_ts', 'vendor_observations', ['user_id', 'ts_ms'], unique=False)
    op.create_index('ix_vendor_observations_rule', 'vendor_observations', ['vendor', 'rule'], unique=False)
    op.create_table('ingest_cursors',
    sa.Column('connector', sa.String(length=64), nullable=False),
    sa.Column('cursor', JSON, nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('connector', name=op.f('pk_ingest_cursors'))
    )


def downgrade() -> None:
    op.drop_table('ingest_cursors')
    op.drop_index('ix_vendor_observations_rule', table_name='vendor_observations')
    op.drop_index('ix_vendor_observations_user_ts', table_name='vendor_observations')
    op.drop_table('vendor_observations')

"""model registry and shadow scores

Revision ID: 0007
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('model_versions',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('card', JSON, nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('proposal_id', sa.String(length=64), nullable=True),
    sa.Column('previous', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_model_versions'))
    )
    op.create_index(op.f('ix_model_versions_status'), 'model_versions', ['status'], unique=False)
    op.create_table('shadow_scores',
    sa.Column('decision_id', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('risk', sa.Float(), nullable=False),
    sa.Column('threshold_outcome', sa.String(length=16), nullable=False),
    sa.Column('top_family', sa.String(length=16), nullable=False),
    sa.Column('top_drivers', JSON, nullable=False),
    sa.PrimaryKeyConstraint('decision_id', 'model_version', name=op.f('pk_shadow_scores'))
    )


def downgrade() -> None:
    op.drop_table('shadow_scores')
    op.drop_index(op.f('ix_model_versions_status'), table_name='model_versions')
    op.drop_table('model_versions')

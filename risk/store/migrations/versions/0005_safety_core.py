"""safety core: approver roles on approvals, superseded verdicts

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        # the roles the approver held when approving: the executor re-derives entitlement from them
        batch_op.add_column(sa.Column('roles', _JSON, nullable=True))
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        # history is kept: an analyst's newer verdict on the same decision supersedes, never replaces
        batch_op.add_column(sa.Column('superseded_by', sa.Integer(), nullable=True))
        batch_op.create_index('ix_verdicts_decision_analyst', ['decision_id', 'analyst'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_index('ix_verdicts_decision_analyst')
        batch_op.drop_column('superseded_by')
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_column('roles')

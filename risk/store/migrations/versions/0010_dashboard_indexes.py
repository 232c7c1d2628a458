"""dashboard indexes: the live feed pages by arrival (seq) under each filter, and the counts read the
last hour or day by event time without touching the rows

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INDEXES = (
    ('decisions', 'ix_decisions_outcome_seq', ['outcome', 'seq']),
    ('decisions', 'ix_decisions_sensitivity_seq', ['sensitivity', 'seq']),
    ('decisions', 'ix_decisions_resource_seq', ['resource_id', 'seq']),
    ('decisions', 'ix_decisions_user_seq', ['user_id', 'seq']),
    ('decisions', 'ix_decisions_ts_outcome', ['ts_ms', 'outcome', 'decision_id']),
    ('explanations', 'ix_explanations_family', ['decision_id', 'top_family']),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)

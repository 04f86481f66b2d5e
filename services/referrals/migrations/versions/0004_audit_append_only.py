"""referrals: the audit log refuses TRUNCATE too (it already refused UPDATE and DELETE)

Revision ID: 0004
"""

from alembic import op

from shared.audit import append_only_ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in append_only_ddl():
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")

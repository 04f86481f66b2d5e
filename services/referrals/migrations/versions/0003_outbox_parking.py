"""referrals: platform v2 (outbox rows that keep failing are parked)

Revision ID: 0003
"""

from alembic import op

from shared.migrations import platform_v2

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in platform_v2():
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")

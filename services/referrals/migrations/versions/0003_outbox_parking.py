"""referrals: platform v2 (outbox rows that keep failing are parked)

Revision ID: 0003
"""

from shared.migration_pieces import park_failing_outbox_rows

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    park_failing_outbox_rows()


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")

"""directory: platform v2 (outbox rows that keep failing are parked)

Revision ID: 0002
"""

from shared.migration_pieces import park_failing_outbox_rows

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    park_failing_outbox_rows()


def downgrade() -> None:
    raise NotImplementedError("directory migrations are forward-only")

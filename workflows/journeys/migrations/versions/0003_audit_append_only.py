"""journeys: the audit log refuses TRUNCATE too (it already refused UPDATE and DELETE)

Revision ID: 0003
"""

from shared.migration_pieces import make_audit_log_append_only

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    make_audit_log_append_only()


def downgrade() -> None:
    raise NotImplementedError("journeys migrations are forward-only")

"""care_plans: care relationships the service can show (registered GP practice, break-glass
grants); referral lookups by organisation

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE registered_practice (
            patient_id TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            as_of TIMESTAMPTZ NOT NULL,
            event_id TEXT NOT NULL)""")
    op.execute("""
        CREATE TABLE break_glass_grant (
            id TEXT PRIMARY KEY,
            plan_id TEXT NOT NULL,
            patient_id TEXT NOT NULL,
            user_identity TEXT NOT NULL,
            org TEXT NOT NULL,
            reason_code TEXT NOT NULL,
            reason TEXT NOT NULL,
            granted_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            CHECK (expires_at > granted_at))""")
    op.execute(
        "CREATE INDEX ix_break_glass_user ON break_glass_grant (plan_id, user_identity, expires_at)"
    )
    op.execute("CREATE INDEX ix_timeline_patient_from ON timeline_entry (patient_id, from_org)")
    op.execute("CREATE INDEX ix_timeline_patient_to ON timeline_entry (patient_id, to_org)")


def downgrade() -> None:
    raise NotImplementedError("care_plans migrations are forward-only")

"""referrals: full lifecycle (hold, appointments, flags), transition notes, directory replica

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE referral ADD COLUMN held_from TEXT")
    op.execute("ALTER TABLE referral ADD COLUMN appointment_at TIMESTAMPTZ")
    op.execute("ALTER TABLE referral ADD COLUMN submitted_at TIMESTAMPTZ")
    op.execute("ALTER TABLE referral ADD COLUMN flags TEXT[] NOT NULL DEFAULT '{}'")
    op.execute("UPDATE referral SET submitted_at = created_at WHERE state <> 'draft'")
    op.execute("CREATE INDEX ix_referral_from_org ON referral (from_org)")
    op.execute("CREATE INDEX ix_referral_ics ON referral (ics)")
    op.execute("CREATE INDEX ix_referral_to_service ON referral (to_service_id)")
    op.execute("ALTER TABLE referral_transition ADD COLUMN note TEXT")
    # history is append-only, like the audit log
    op.execute("""CREATE FUNCTION referral_transition_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'referral_transition is append-only'; END $$""")
    op.execute("""CREATE TRIGGER referral_transition_no_change
        BEFORE UPDATE OR DELETE ON referral_transition
        FOR EACH ROW EXECUTE FUNCTION referral_transition_append_only()""")
    op.execute("""
        CREATE TABLE directory_service (
            service_id TEXT PRIMARY KEY,
            org_code TEXT NOT NULL,
            category TEXT NOT NULL,
            status TEXT NOT NULL,
            self_referral BOOLEAN NOT NULL,
            as_of TIMESTAMPTZ NOT NULL)""")


def downgrade() -> None:
    raise NotImplementedError("referrals migrations are forward-only")
